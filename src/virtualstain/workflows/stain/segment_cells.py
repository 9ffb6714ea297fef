"""``virtualstain segment --cells STAIN --nuclei NUCLEI``: cell, nucleus and cytoplasm labels of one field."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._atomic import ensure_writable_dir, refuse_overwriting_inputs
from ...analysis import segment_cells, segment_nuclei, segmentation_lengths
from ...analysis.whole_cells import CellStain
from ...data.io import check_finite, output_path, write_labels
from ...data.units import check_pixel_size_um
from ...errors import UserError
from .segment import read_plane

#: An integer image whose neighbouring non-zero pixels are equal at least this often is a label image:
#: label TIFFs score ≥ 0.99 (BBBC039, StarDist, celldetective), raw uint8/uint16 stains ≤ 0.41 (BBBC022,
#: BBBC039, CellProfiler ExampleHuman, sephace, FRM).
_PIECEWISE_CONSTANT = 0.9


@dataclass(frozen=True)
class SegmentedCells:
    """The three label files written for one field, and what they hold.

    Attributes
    ----------
    cells, nuclei, cytoplasm : pathlib.Path
        ``<stem>_cells.tif``, ``<stem>_nuclei.tif``, ``<stem>_cytoplasm.tif`` (cell k ⊇ nucleus k).
    count : int
        Cells (= nuclei).
    with_cytoplasm : int
        Cells with at least one pixel outside their nucleus.
    nuclei_from : str
        Where the nuclei come from, for the terminal.
    """

    cells: Path
    nuclei: Path
    cytoplasm: Path
    count: int
    with_cytoplasm: int
    nuclei_from: str

    def line(self) -> str:
        """One line for the terminal."""
        return (f"{self.cells}\t{self.count} cells, {self.with_cytoplasm} with cytoplasm\t"
                f"(nuclei: {self.nuclei_from}; also {self.nuclei.name}, {self.cytoplasm.name})")


def is_label_image(array: np.ndarray) -> bool:
    """Whether a 2D array is instance labels: integer and piecewise constant (see ``_PIECEWISE_CONSTANT``)."""
    if not np.issubdtype(array.dtype, np.integer):
        return False
    equal = pairs = 0
    for a, b in ((array[1:], array[:-1]), (array[:, 1:], array[:, :-1])):
        both = (a != 0) & (b != 0)
        equal += int(np.count_nonzero(both & (a == b)))
        pairs += int(np.count_nonzero(both))
    return pairs == 0 or equal >= _PIECEWISE_CONSTANT * pairs


def output_paths(out: str | os.PathLike, stain: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``OUT/<stem>_cells.tif``, ``_nuclei.tif`` and ``_cytoplasm.tif`` for the stain file ``stain``."""
    folder = Path(out)
    stem = output_path(folder, Path(stain)).stem
    return folder / f"{stem}_cells.tif", folder / f"{stem}_nuclei.tif", folder / f"{stem}_cytoplasm.tif"


def segment_cells_files(stain: str | os.PathLike, nuclei: str | os.PathLike, out: str | os.PathLike, *,
                        kind: CellStain = "cytoplasm", pixel_size_um: float | None = None,
                        smooth_um: float | None = None, split_depth_um: float | None = None,
                        min_area_um2: float | None = None, channel: int = 0) -> SegmentedCells:
    """Segment the cells of one field from a cytoplasm or membrane stain, seeded by its nuclei.

    Parameters
    ----------
    stain : path-like
        2D image (``channel`` of a multi-channel file) of a cytoplasm or membrane stain.
    nuclei : path-like
        The same field's nuclei: an integer label TIFF (used as it is), or an image of the nuclear stain,
        segmented as ``virtualstain segment`` does (``channel`` of a multi-channel file).
    out : path-like
        Folder for the three label TIFFs (see :func:`output_paths`); none of them may be an input.
    kind : {"cytoplasm", "membrane"}
        What the stain marks.
    pixel_size_um : float, optional
        µm per pixel; default from the stain file, else the nuclei file, else lengths are in px.
    smooth_um, split_depth_um, min_area_um2 : float, optional
        Lengths of the nuclei segmentation (as in :func:`~virtualstain.workflows.stain.segment.segment_files`);
        ``smooth_um`` also smooths the stain (default: the nuclei's smoothing, 1 µm or 1 px for label files).

    Returns
    -------
    SegmentedCells

    Raises
    ------
    UserError
        Missing or unreadable file, not 2D, images of different shapes, bad lengths, unwritable ``out``.
    """
    for flag, value in (("--pixel-size-um", pixel_size_um), ("--smooth-um", smooth_um),
                        ("--split-depth-um", split_depth_um), ("--min-area-um2", min_area_um2)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UserError(f"{flag} {value}: give a finite number ≥ 0 (µm)")
    check_pixel_size_um(pixel_size_um, required=False)
    stain_path, nuclei_path = Path(stain), Path(nuclei)
    dests = output_paths(out, stain_path)
    refuse_overwriting_inputs(dests, [stain_path, nuclei_path])
    image, stain_px = _plane(stain_path, channel, "--cells")
    raw, nuclei_px = _plane(nuclei_path, channel, "--nuclei")
    if raw.shape != image.shape:
        raise UserError(f"{nuclei_path}: --nuclei is {raw.shape[0]}×{raw.shape[1]} px but --cells {stain_path} is "
                        f"{image.shape[0]}×{image.shape[1]}; give the nuclei of the same field at the same size")
    known = pixel_size_um or stain_px or nuclei_px
    if is_label_image(raw):
        if raw.min() < 0:
            raise UserError(f"{nuclei_path}: label image with negative values; labels are ≥ 0 (0 = background)")
        labels = raw.astype(np.int32)
        nuclei_from = f"labels of {nuclei_path.name}"
        smooth = smooth_um if smooth_um is not None else 1.0
    else:
        plane = raw.astype(np.float32)
        check_finite(plane, nuclei_path)
        lengths = segmentation_lengths(plane, known)
        given = {"smooth_um": smooth_um, "split_depth_um": split_depth_um, "min_area_um2": min_area_um2}
        kwargs = {**lengths.kwargs(), **{k: v for k, v in given.items() if v is not None}}
        labels = segment_nuclei(plane, **kwargs)
        nuclei_from = f"segmented in {nuclei_path.name}, {lengths.reason}"
        smooth = kwargs["smooth_um"]
    check_finite(image, stain_path)
    result = segment_cells(image, labels, kind, pixel_size_um=known or 1.0, smooth_um=smooth)
    ensure_writable_dir(out)
    for dest, array in zip(dests, (result.cells, result.nuclei, result.cytoplasm)):
        write_labels(dest, array, pixel_size_um=known)
    with_cytoplasm = int(np.count_nonzero(np.unique(result.cytoplasm)))
    return SegmentedCells(*dests, count=result.count, with_cytoplasm=with_cytoplasm, nuclei_from=nuclei_from)


def _plane(path: Path, channel: int, flag: str) -> tuple[np.ndarray, float | None]:
    """The 2D plane ``channel`` of an image file (dtype kept for ``--nuclei``, else float32), and its pixel size."""
    plane, meta = read_plane(path, channel, flag)
    return (plane if flag == "--nuclei" else plane.astype(np.float32)), meta.pixel_size_um
