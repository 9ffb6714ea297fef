"""Measured defocused / in-focus pairs (a registered z-stack's planes) in the units of ``defocus-pairs``.

Both images of a pair are scaled with the in-focus image's range, ``(I − min F) / (max F − min F)``:
the same affine map that :mod:`.defocus_pairs` applies to its target (and, through the blur, to its
input), so that a model trained on simulated pairs sees a measured pair in the units it learned.
Written under ``DIR``: ``input/DEFOCUSED.tif``, ``target/INFOCUS.tif`` (float32, pixel size and, when
known, ``defocus_um`` in the metadata) and ``manifest.csv`` (group: the in-focus image's name, as in
``defocus-pairs``, so that simulated and measured pairs of one field share a split).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..._atomic import ensure_writable_dir, refuse_duplicate_outputs, refuse_overwriting_inputs, write_csv_atomic
from ...data.acquisition import Acquisition
from ...data.io import output_path, write_tiff
from ...data.units import check_pixel_size_um
from ...errors import UserError
from .defocus_pairs import DEFAULT_CHANNEL, MANIFEST_COLUMNS, NORMALIZATION, read_plane, scale_to_range


@dataclass
class RealPair:
    """One measured pair: the defocused plane, the in-focus plane of the same field, and the defocus (µm) if known."""

    defocused: Path
    in_focus: Path
    z_um: float | None = None


def write_real_pairs(pairs: Sequence[RealPair], out: str | os.PathLike, *, pixel_size_um: float | None = None,
                     channel_name: str = DEFAULT_CHANNEL) -> Path:
    """Scale every pair with its in-focus range, write it under ``out`` and return the manifest.

    Parameters
    ----------
    pairs : sequence of RealPair
        Registered pairs (same field, same size).
    out : path-like
        Output folder.
    pixel_size_um : float, optional
        Pixel size, µm; default each in-focus file's own.
    channel_name : str
        Channel name written to the files.

    Raises
    ------
    UserError
        A missing / non-2D / NaN / constant image, a pair of two sizes, no pixel size, or an output that is an input.
    """
    if not pairs:
        raise UserError("give at least one defocused / in-focus pair")
    folder = Path(out)
    names = [(output_path(folder / "input", p.defocused), output_path(folder / "target", p.in_focus)) for p in pairs]
    refuse_duplicate_outputs([i for i, _ in names], "defocused images (same file name)")
    refuse_overwriting_inputs([f for pair in names for f in pair] + [folder / "manifest.csv"],
                              [f for p in pairs for f in (p.defocused, p.in_focus)])
    ensure_writable_dir(folder)
    rows = []
    for pair, (input_path, target_path) in zip(pairs, names):
        defocused, _, _ = read_plane(pair.defocused)
        in_focus, file_px, _ = read_plane(pair.in_focus)
        if defocused.shape != in_focus.shape:
            raise UserError(f"{pair.defocused}: {defocused.shape} px but the in-focus {pair.in_focus} is "
                            f"{in_focus.shape}; give registered planes of one field")
        px = check_pixel_size_um(pixel_size_um if pixel_size_um is not None else file_px)
        low, high = float(in_focus.min()), float(in_focus.max())
        common = {"quantity": "fluorescence", "normalization": NORMALIZATION.replace("source", "in-focus"),
                  "source": target_path.stem, "source_min": low, "source_max": high}
        write_tiff(target_path, scale_to_range(in_focus, low, high)[None], pixel_size_um=px,
                   channel_names=[channel_name], description=common)
        write_tiff(input_path, scale_to_range(defocused, low, high)[None], pixel_size_um=px, channel_names=[channel_name],
                   description={**common, **Acquisition(defocus_um=pair.z_um).to_dict(), "measured": True})
        rows.append({"input": f"input/{input_path.name}", "target": f"target/{target_path.name}",
                     "group": target_path.stem, "pixel_size_um": px})
    return write_csv_atomic(folder / "manifest.csv", rows, MANIFEST_COLUMNS)
