"""Write the two real phase maps of ../shared/data as radian OME-TIFFs for `virtualstain simulate`.

HL60 cell (off-axis hologram, 0.107 µm pixels) and PAA bead (QLSI, 0.06575 µm pixels): phase retrieved
with `virtualstain.optics`, background set to 0 by a sphere fit's offset, then padded with glass
(phase 0) to a field of at least FIELD_UM so that, at the simulation's 0.65 µm pixels, the cell sits in
a 128-px field like the synthetic ones. `simulate` resamples them to its pixel size.

    python examples/srqpi/real_phase_maps.py ../shared/data OUT_FOLDER
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np

from virtualstain import optics
from virtualstain.data.phase_maps import write_phase_map

FIELD_UM = 83.2  # 128 px of 0.65 µm


def _pad(phase: np.ndarray, pixel_size_um: float) -> np.ndarray:
    n = int(np.ceil(FIELD_UM / pixel_size_um))
    py, px = max(0, n - phase.shape[0]), max(0, n - phase.shape[1])
    return np.pad(phase, ((py // 2, py - py // 2), (px // 2, px - px // 2)))


def main(data: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((data / "qpi_hl60_hologram" / "meta.json").read_text())
    holo = np.load(data / "qpi_hl60_hologram" / "hologram_cell.npz")
    phase = optics.hologram_phase(holo["data"], holo["bg_data"])
    lam, px = meta["wavelength_um"], meta["pixel_size_um"]
    fit = optics.fit_sphere(phase, wavelength_um=lam, pixel_size_um=px)
    write_phase_map(out / "hl60.tif", _pad(phase - fit.offset_rad, px), wavelength_um=lam, pixel_size_um=px,
                method="off-axis hologram (qpretrieve), sphere-fit offset removed, padded with glass")
    meta = json.loads((data / "qpi_bead_qlsi" / "meta.json").read_text())
    with h5py.File(data / "qpi_bead_qlsi" / "qlsi_paa_bead.h5", "r") as h5:
        interferogram, reference = h5["0"][:], h5["reference"][:]
    lam, px = meta["wavelength_um"], meta["pixel_size_um"]
    phase = optics.qlsi_phase(interferogram, reference, wavelength_um=lam, pitch_term_um=meta["qlsi_pitch_term_m"] * 1e6)
    fit = optics.fit_sphere(phase, wavelength_um=lam, pixel_size_um=px)
    write_phase_map(out / "bead.tif", _pad(phase - fit.offset_rad, px), wavelength_um=lam, pixel_size_um=px,
                method="QLSI (qpretrieve), sphere-fit offset removed, padded with glass")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
