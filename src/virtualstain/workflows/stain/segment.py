"""``virtualstain segment``: nuclei instance labels for image files."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._atomic import ensure_writable_dir, refuse_duplicate_outputs, refuse_overwriting_inputs
from ...analysis import segment_nuclei, segmentation_lengths
from ...data.io import ImageMeta, check_finite, output_path, read_image, to_channels_first, write_labels
from ...data.units import check_pixel_size_um
from ...errors import UserError
from .nuclei_segmenter import DEFAULT_NUCLEI_METHOD, NUCLEI_METHODS


@dataclass(frozen=True)
class Segmented:
    """One segmented image: the label file written, its nucleus count and how it was segmented."""

    labels: Path
    count: int
    how: str


def read_plane(path: Path, channel: int, what: str) -> tuple[np.ndarray, ImageMeta]:
    """The 2D plane ``channel`` of an image file (dtype kept) and the file's metadata; ``what`` (the command or
    option) names the file's role in the error for a file that is not 2D or lacks the channel."""
    array, meta = read_image(path)
    if array.ndim > 3:
        raise UserError(f"{path}: {what} takes 2D images, (Y, X) or (C, Y, X), but this file is {array.shape} "
                        f"(axes {meta.axes}); save one plane per file, or its maximum projection")
    stack = to_channels_first(array, meta, 2, path)
    if channel >= stack.shape[0]:
        raise UserError(f"{path}: --channel {channel} but the image has {stack.shape[0]} channel(s); "
                        f"use 0..{stack.shape[0] - 1}")
    return stack[channel], meta


def segment_files(images: Sequence[str | os.PathLike], out: str | os.PathLike, *, pixel_size_um: float | None = None,
                  smooth_um: float | None = None, split_depth_um: float | None = None,
                  min_area_um2: float | None = None, channel: int = 0,
                  method: str | None = None) -> list[Segmented]:
    """Segment nuclei in each 2D image (``channel`` of multi-channel files).

    ``method`` (default :data:`~virtualstain.workflows.stain.nuclei_segmenter.DEFAULT_NUCLEI_METHOD`):
    ``"learned"`` uses the shipped learned segmenter
    (:func:`~virtualstain.workflows.stain.nuclei_segmenter.segment_nuclei_learned`), which sizes the nuclei
    from the image itself; ``"cellpose"`` cellpose's nuclei model with that size estimate as its diameter
    (:func:`~virtualstain.workflows.stain.nuclei_segmenter.segment_nuclei_cellpose`; only where cellpose is
    installed, else a UserError). The length options apply to the classical method only.

    Lengths are in µm; the pixel size comes from ``pixel_size_um``, else the file. Lengths not given are
    1 µm (smoothing σ), 0.5 µm (split depth) and 20 µm² (minimum area) with a pixel size; without one they
    are scaled to the image's typical nucleus diameter (:func:`~virtualstain.analysis.segmentation_lengths`)
    and given ones are in pixels. No label file may be one of the images (checked before any work, also
    through links).
    """
    for flag, value in (("--pixel-size-um", pixel_size_um), ("--smooth-um", smooth_um),
                        ("--split-depth-um", split_depth_um), ("--min-area-um2", min_area_um2)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UserError(f"{flag} {value}: give a finite number ≥ 0 (µm)")
    check_pixel_size_um(pixel_size_um, required=False)
    method = method or DEFAULT_NUCLEI_METHOD
    if method not in NUCLEI_METHODS:
        raise UserError(f"--method {method}: use {', '.join(NUCLEI_METHODS)}")
    lengths_given = [flag for flag, value in (("--smooth-um", smooth_um), ("--split-depth-um", split_depth_um),
                                              ("--min-area-um2", min_area_um2)) if value is not None]
    if method != "classical" and lengths_given:
        raise UserError(f"{', '.join(lengths_given)} set the classical method's lengths, but the method is {method} "
                        "(it sizes the nuclei from each image); add --method classical, or leave them out")
    if method == "cellpose":
        from .nuclei_segmenter import cellpose_model

        cellpose_model("segment --method")  # not installed, or no weights: fail before any work
    paths = [Path(name) for name in images]
    dests = [output_path(Path(out), path) for path in paths]
    refuse_overwriting_inputs(dests, paths)
    refuse_duplicate_outputs(dests, "images (same file name)")
    folder = ensure_writable_dir(out)
    written = []
    for path in paths:
        plane, meta = read_plane(path, channel, "segment")
        image = plane.astype(np.float32)
        check_finite(image, path)
        known = pixel_size_um or meta.pixel_size_um
        if method != "classical":
            from .nuclei_segmenter import segment_nuclei_cellpose, segment_nuclei_learned

            found = segment_nuclei_learned(image) if method == "learned" else segment_nuclei_cellpose(image)
            labels, how = found.labels, found.describe()
        else:
            lengths = segmentation_lengths(image, known)
            given = {"smooth_um": smooth_um, "split_depth_um": split_depth_um, "min_area_um2": min_area_um2}
            labels = segment_nuclei(image, **{**lengths.kwargs(), **{k: v for k, v in given.items() if v is not None}})
            how = lengths.reason
        dest = output_path(folder, path)
        write_labels(dest, labels, pixel_size_um=known)
        written.append(Segmented(dest, int(labels.max()), how))
    return written
