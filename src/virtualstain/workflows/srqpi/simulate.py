"""``virtualstain simulate``: DL-SRQPI training pairs from high-resolution phase maps (no torch).

Each phase map is imaged as a bright-field intensity by the optics forward model (Abbe,
partially coherent, defocus z, objective NA), corrupted by Gaussian noise and binned k×, as in
DL-SRQPI (noise, then binning). For every phase map and every (z, S) the pair is written as
``DIR/lr/NAME.tif`` (the low-resolution intensity, pixel size k·P) and ``DIR/hr/NAME.tif`` (the
phase in radians, pixel size P, cropped to a multiple of k), with the parameters in each file's
metadata, plus ``DIR/manifest.csv`` (one group per phase map, so that a split by group tests on
cells never seen in training, and ``scale`` = k so that ``train`` pairs an LR patch of p pixels with
the HR patch of k·p) and ``DIR/simulation.json``.

Phase maps whose files record another pixel size are resampled to ``pixel_size_um`` first (area
averaging when shrinking), so that cells keep their physical size. Synthetic cells depend only on
(seed, index): different seeds never share a cell, which makes held-out test sets easy to build.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from skimage.transform import rescale
from tqdm.auto import tqdm

from ..._atomic import (
    ensure_writable_dir,
    refuse_duplicate_outputs,
    refuse_overwriting_inputs,
    write_csv_atomic,
    write_text_atomic,
)
from ...data.acquisition import Acquisition
from ...data.io import check_not_constant, write_tiff
from ...data.phase_maps import read_phase_map, write_phase_map
from ...data.ranges import parse_values as parse_values  # the shared parser of --defocus-um / --coherence
from ...data.synthetic import make_field
from ...data.units import check_pixel_size_um, check_wavelength_um
from ...errors import UserError
from ...optics import add_gaussian_noise, bin_pixels, brightfield_intensity

MANIFEST_COLUMNS = ["input", "target", "group", "pixel_size_um", "scale"]
#: Relative pixel-size difference below which a phase map is used as it is.
RESAMPLE_TOLERANCE = 0.01


@dataclass
class SimulationSettings:
    """Optics and camera of the simulated microscope (lengths in µm).

    Attributes
    ----------
    wavelength_um, pixel_size_um : float
        Illumination wavelength; pixel size of the high-resolution phase maps.
    na : float
        Objective numerical aperture.
    defocus_um, coherence : list of float
        Every combination of defocus z and coherence S = NA_cond/NA_obj is simulated.
    binning : int
        Camera binning k (the super-resolution factor).
    noise : float
        σ of the Gaussian noise added to the intensity (empty field = 1) before binning.
    medium_index : float
        Refractive index of the medium.
    seed : int
        Seed of the noise (and of the synthetic cells).
    synthetic_peak_rad : list of float, optional
        ``[low, high]``: each synthetic field is scaled so that its largest phase is drawn uniformly
        from this range (rad), to cover thicker or thinner cells than the generator's ≈2.6 rad.
    """

    wavelength_um: float
    pixel_size_um: float
    na: float
    defocus_um: list[float] = field(default_factory=lambda: [4.0])
    coherence: list[float] = field(default_factory=lambda: [0.0])
    binning: int = 4
    noise: float = 0.01
    medium_index: float = 1.0
    seed: int = 0
    synthetic_peak_rad: list[float] | None = None


def simulate_intensity(phase_rad: np.ndarray, *, defocus_um: float, coherence: float, settings: SimulationSettings,
                       rng: np.random.Generator) -> np.ndarray:
    """The low-resolution intensity of one phase map: Abbe image at ``defocus_um``, noise, k× binning.

    ``phase_rad`` must be a multiple of ``settings.binning`` in Y and X (see :func:`crop_to_multiple`).
    """
    intensity = brightfield_intensity(phase_rad, z_um=defocus_um, wavelength_um=settings.wavelength_um,
                                      pixel_size_um=settings.pixel_size_um, na_obj=settings.na, coherence=coherence,
                                      medium_index=settings.medium_index, padding="reflect")
    if settings.noise > 0:
        intensity = add_gaussian_noise(intensity, settings.noise, rng)
    return bin_pixels(intensity, settings.binning)


#: Typical radius of a synthetic cell, µm (adherent mammalian cells are 5–15 µm across their radius).
SYNTHETIC_CELL_RADIUS_UM = 8.0


def synthetic_cell_radius_px(pixel_size_um: float) -> float:
    """Synthetic cells of :data:`SYNTHETIC_CELL_RADIUS_UM` at this pixel size, kept within 8–60 px."""
    return float(np.clip(SYNTHETIC_CELL_RADIUS_UM / pixel_size_um, 8.0, 60.0))


def synthetic_phase(index: int, settings: SimulationSettings, shape: tuple[int, int]) -> np.ndarray:
    """Noise-free phase (rad) of synthetic field ``index`` for ``settings.seed``; unique per (seed, index)."""
    state = np.random.SeedSequence([settings.seed, index]).generate_state(2)
    cells = make_field(shape, seed=int(state[0]), modality="phase", noise=0.0,
                       cell_radius_px=synthetic_cell_radius_px(settings.pixel_size_um))
    phase = cells.input[0].astype(np.float64)
    if settings.synthetic_peak_rad:
        low, high = settings.synthetic_peak_rad
        phase *= np.random.default_rng(int(state[1])).uniform(low, high) / phase.max()
    return phase


def resampled_phase_map(path: str | os.PathLike, pixel_size_um: float) -> np.ndarray:
    """A ``(Y, X)`` phase map in radians (:func:`~virtualstain.data.phase_maps.read_phase_map`), resampled to
    ``pixel_size_um`` when its file records another pixel size.

    Raises
    ------
    UserError
        Not a phase map in radians, or a constant one (it would simulate an empty field).
    """
    phase_map = read_phase_map(path)
    phase = phase_map.phase[0]
    check_not_constant(phase, path, "phase map")
    source_px = phase_map.pixel_size_um
    if source_px and abs(source_px / pixel_size_um - 1) > RESAMPLE_TOLERANCE:
        factor = source_px / pixel_size_um
        phase = rescale(phase, factor, order=1, anti_aliasing=factor < 1, preserve_range=True, mode="reflect")
    return phase


def crop_to_multiple(image: np.ndarray, k: int, source: str | os.PathLike | None = None) -> np.ndarray:
    """Crop the bottom/right so that Y and X are multiples of ``k``."""
    ny, nx = (image.shape[-2] // k) * k, (image.shape[-1] // k) * k
    if ny == 0 or nx == 0:
        raise UserError(f"{source or 'phase map'}: a {image.shape[-2]}×{image.shape[-1]} px phase map is smaller than "
                        f"the {k}× binning; give maps of at least {k}×{k} px or a smaller --binning")
    return image[..., :ny, :nx]


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _check(settings: SimulationSettings) -> None:
    numbers = {"--wavelength-um": [settings.wavelength_um], "--pixel-size-um": [settings.pixel_size_um],
               "--na": [settings.na], "--defocus-um": settings.defocus_um, "--coherence": settings.coherence,
               "--noise": [settings.noise], "medium_index": [settings.medium_index],
               "--synthetic-peak-rad": settings.synthetic_peak_rad or []}
    for flag, values in numbers.items():
        if not all(_finite(v) for v in values):
            raise UserError(f"{flag} {','.join(map(str, values))}: every value must be a finite number (not nan or inf)")
    if not settings.defocus_um or not settings.coherence:
        raise UserError("--defocus-um and --coherence need at least one value each")
    if settings.medium_index < 1:
        raise UserError(f"medium_index {settings.medium_index}: a refractive index is ≥ 1 (water 1.33)")
    check_wavelength_um(settings.wavelength_um)
    check_pixel_size_um(settings.pixel_size_um)
    if not 0 < settings.na <= settings.medium_index:
        raise UserError(f"--na {settings.na}: the objective NA must be in (0, {settings.medium_index}]")
    if any(not 0 <= s <= 1 for s in settings.coherence):
        raise UserError(f"--coherence {settings.coherence}: S = NA_cond/NA_obj must be in [0, 1]")
    if settings.binning < 1:
        raise UserError(f"--binning {settings.binning} must be a positive integer")
    if settings.noise < 0:
        raise UserError(f"--noise {settings.noise} must be ≥ 0")
    peak = settings.synthetic_peak_rad
    if peak is not None and not (len(peak) == 2 and 0 < peak[0] <= peak[1]):
        raise UserError(f"--synthetic-peak-rad {peak}: give LOW:HIGH with 0 < LOW ≤ HIGH (rad)")


def _check_resumable(folder: Path, log: Path, settings: SimulationSettings) -> None:
    """Refuse ``folder`` if it holds pairs simulated with other settings (resuming would mix them).

    A ``simulation.json`` alone (a run refused or failed before its first pair) does not block.
    """
    if not log.exists():
        return
    try:
        recorded = json.loads(log.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        recorded = None
    if isinstance(recorded, dict) and recorded.get("settings") == json.loads(json.dumps(asdict(settings))):
        return
    pairs = {p.name for sub in ("lr", "hr") if (folder / sub).is_dir() for p in (folder / sub).glob("*.tif")}
    if pairs or (isinstance(recorded, dict) and recorded.get("pairs")):
        what = "other settings" if isinstance(recorded, dict) else "unknown settings (unreadable simulation.json)"
        raise UserError(f"{folder}: holds {len(pairs)} pair(s) simulated with {what} ({log}); use another --out, "
                        "or rerun with the same settings to resume")


@dataclass
class Simulation:
    """What :func:`simulate_pairs` wrote: the manifest and one entry per pair."""

    manifest: Path
    pairs: list[dict] = field(default_factory=list)


def simulate_pairs(phase_files: Sequence[str | os.PathLike], out: str | os.PathLike, settings: SimulationSettings, *,
                   synthetic: int = 0, synthetic_shape: tuple[int, int] = (512, 512),
                   progress: bool = False) -> Simulation:
    """Write low-resolution intensity / high-resolution phase pairs and their manifest.

    Parameters
    ----------
    phase_files : sequence of path-like
        Phase maps in radians (e.g. from ``virtualstain phase``); 2D.
    out : path-like
        Output folder (``lr/``, ``hr/``, ``manifest.csv``, ``simulation.json``).
    settings : SimulationSettings
        Optics and camera.
    synthetic : int
        Also simulate this many synthetic cell fields (noise-free phase of the synthetic generator).
    synthetic_shape : (int, int)
        Size of the synthetic fields, px.
    progress : bool
        Show a progress bar. An interrupted simulation resumes: pairs already written are kept
        (each pair's noise is seeded by (seed, map, z, S), so the result does not depend on it).

    Returns
    -------
    Simulation

    Raises
    ------
    UserError
        Bad settings (NaN included), a phase map that is not radians or is too small, two pairs with one name,
        an output that is one of the phase maps, or ``out`` holding pairs simulated with other settings;
        all before anything is written.
    """
    _check(settings)
    if not phase_files and synthetic <= 0:
        raise UserError("give phase maps (PHASE.tif …) or --synthetic N")
    k = settings.binning
    # everything is read and checked before anything is written
    sources = [(Path(path).stem, crop_to_multiple(resampled_phase_map(path, settings.pixel_size_um), k, path))
               for path in phase_files]
    sources += [(f"synthetic{settings.seed}_{i:03d}",
                 crop_to_multiple(synthetic_phase(i, settings, synthetic_shape), k, "--synthetic"))
                for i in range(synthetic)]
    jobs = [(i, z, s) for i in range(len(sources)) for z in settings.defocus_um for s in settings.coherence]
    names = [f"{sources[i][0]}_z{z:g}_s{s:g}.tif" for i, z, s in jobs]
    folder = Path(out)
    log = folder / "simulation.json"
    written = [folder / sub / name for name in names for sub in ("lr", "hr")]
    refuse_duplicate_outputs(written, "phase maps (same file name, or the name of a synthetic field)")
    refuse_overwriting_inputs(written + [folder / "manifest.csv", log], phase_files)
    _check_resumable(folder, log, settings)
    folder = ensure_writable_dir(out)
    write_text_atomic(log, json.dumps({"settings": asdict(settings), "pairs": []}, indent=2))
    result = Simulation(manifest=folder / "manifest.csv")
    rows = []
    for (i, z, s), name in tqdm(list(zip(jobs, names)), desc="simulate", unit="pair", disable=not progress):
        stem, phase = sources[i]
        params = {**Acquisition(binning=k, wavelength_um=settings.wavelength_um, na=settings.na, defocus_um=z,
                                coherence=s, noise=settings.noise).to_dict(), "source": stem}
        if not ((folder / "lr" / name).exists() and (folder / "hr" / name).exists()):  # else: resumed
            rng = np.random.default_rng([settings.seed, i, settings.defocus_um.index(z), settings.coherence.index(s)])
            low = simulate_intensity(phase, defocus_um=z, coherence=s, settings=settings, rng=rng)
            write_tiff(folder / "lr" / name, low[None], pixel_size_um=settings.pixel_size_um * k,
                       channel_names=["brightfield"], description={"quantity": "intensity", **params})
            write_phase_map(folder / "hr" / name, phase, wavelength_um=settings.wavelength_um,
                            pixel_size_um=settings.pixel_size_um, method="simulation ground truth")
        rows.append({"input": f"lr/{name}", "target": f"hr/{name}", "group": stem,
                     "pixel_size_um": settings.pixel_size_um * k, "scale": k})
        result.pairs.append({"name": name, "lr_shape": [n // k for n in phase.shape], "hr_shape": list(phase.shape),
                             **params})
    write_text_atomic(log, json.dumps({"settings": asdict(settings), "pairs": result.pairs}, indent=2))
    write_csv_atomic(result.manifest, rows, MANIFEST_COLUMNS)
    return result
