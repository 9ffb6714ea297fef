"""``virtualstain segment``: nuclei instance labels for image files."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..._atomic import ensure_writable_dir, refuse_duplicate_outputs, refuse_overwriting_inputs
from ...analysis import segment_nuclei
from ...data.io import check_finite, output_path, read_image, to_channels_first, write_labels
from ...data.units import check_pixel_size_um
from ...errors import UserError


def segment_files(images: Sequence[str | os.PathLike], out: str | os.PathLike, *, pixel_size_um: float | None = None,
                  smooth_um: float = 1.0, split_depth_um: float = 0.5, min_area_um2: float = 20.0,
                  channel: int = 0) -> list[tuple[Path, int]]:
    """Segment nuclei in each 2D image (``channel`` of multi-channel files); returns (label file, count) pairs.

    Lengths are in µm: the pixel size comes from ``pixel_size_um``, else the file, else 1 (pixels).
    No label file may be one of the images (checked before any work, also through links).
    """
    for flag, value in (("--pixel-size-um", pixel_size_um), ("--smooth-um", smooth_um),
                        ("--split-depth-um", split_depth_um), ("--min-area-um2", min_area_um2)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UserError(f"{flag} {value}: give a finite number ≥ 0 (µm)")
    check_pixel_size_um(pixel_size_um, required=False)
    paths = [Path(name) for name in images]
    dests = [output_path(Path(out), path) for path in paths]
    refuse_overwriting_inputs(dests, paths)
    refuse_duplicate_outputs(dests, "images (same file name)")
    folder = ensure_writable_dir(out)
    written = []
    for path in paths:
        array, meta = read_image(path)
        if array.ndim > 3:
            raise UserError(f"{path}: segment takes 2D images, (Y, X) or (C, Y, X), but this file is {array.shape} "
                            f"(axes {meta.axes}); save one plane per file, or its maximum projection")
        stack = to_channels_first(array, meta, 2, path)
        if channel >= stack.shape[0]:
            raise UserError(f"{path}: --channel {channel} but the image has {stack.shape[0]} channel(s); "
                            f"use 0..{stack.shape[0] - 1}")
        image = stack[channel].astype(np.float32)
        check_finite(image, path)
        px = pixel_size_um or meta.pixel_size_um or 1.0
        labels = segment_nuclei(image, pixel_size_um=px, smooth_um=smooth_um, split_depth_um=split_depth_um,
                                min_area_um2=min_area_um2)
        dest = output_path(folder, path)
        write_labels(dest, labels, pixel_size_um=px if (pixel_size_um or meta.pixel_size_um) else None)
        written.append((dest, int(labels.max())))
    return written
