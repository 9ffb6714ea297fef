"""``virtualstain segment``: nuclei instance labels for image files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..._atomic import ensure_writable_dir
from ...analysis import segment_nuclei
from ...data.io import check_finite, output_path, read_image, to_channels_first, write_labels
from ...errors import UserError


def segment_files(images: Sequence[str | os.PathLike], out: str | os.PathLike, *, pixel_size_um: float | None = None,
                  smooth_um: float = 1.0, split_depth_um: float = 0.5, min_area_um2: float = 20.0,
                  channel: int = 0) -> list[tuple[Path, int]]:
    """Segment nuclei in each 2D image (``channel`` of multi-channel files); returns (label file, count) pairs.

    Lengths are in µm: the pixel size comes from ``pixel_size_um``, else the file, else 1 (pixels).
    """
    folder = ensure_writable_dir(out)
    written = []
    for name in images:
        path = Path(name)
        array, meta = read_image(path)
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
