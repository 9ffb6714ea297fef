"""``virtualstain defocus-pairs``: defocused / in-focus fluorescence training pairs from in-focus images.

Each in-focus image I is scaled to its range, ``T = (I − min I) / (max I − min I)`` (so 0…1), and is
the target of every pair made from it. The input at defocus z is ``T ⊛ h_z`` (the incoherent defocus
PSF of :mod:`virtualstain.optics.defocus`, or a measured PSF), then optionally shot noise
(``Poisson(photons · x) / photons``) and Gaussian noise of σ ``noise`` — in the same units, i.e. a
fraction of the source image's range max − min. Written under ``DIR``:

``target/NAME.tif``      T, float32, pixel size in the metadata (one per source image);
``input/NAME_zZ.tif``    the defocused image at each z (``defocus_um``, ``na``, ``wavelength_um`` recorded);
``manifest.csv``         input,target,group,pixel_size_um — the group is the source image, so that every
                         defocus level of one field lands in the same split (no leak into the test split);
``defocus_pairs.json``   the settings and one entry per pair.

z values inside ``exclude_um`` (closed interval; VirFluoNet drops −2…2 µm, where planes look as sharp as
the focus) are left out. Every output is written atomically; a rerun with the same settings skips what
exists, another run's settings in the same folder are refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..._atomic import (
    ensure_writable_dir,
    refuse_duplicate_outputs,
    refuse_overwriting_inputs,
    remove_stale_parts,
    write_csv_atomic,
    write_text_atomic,
)
from ...data.acquisition import Acquisition
from ...data.io import as_float32, check_finite, check_not_constant, output_path, read_image, write_tiff
from ...data.ranges import drop_inside
from ...data.units import check_pixel_size_um, check_wavelength_um
from ...errors import UserError
from ...optics import add_gaussian_noise, add_poisson_noise, blur, defocus_image, normalize_psf

MANIFEST_COLUMNS = ["input", "target", "group", "pixel_size_um"]
LOG_NAME = "defocus_pairs.json"
#: Relative difference between a measured PSF's recorded pixel size and the images' that is refused.
PSF_PIXEL_TOLERANCE = 0.01
DEFAULT_CHANNEL = "fluorescence"
NORMALIZATION = "(I - min I) / (max I - min I) of the source image"


@dataclass
class DefocusSettings:
    """How the pairs are made (lengths in µm).

    Attributes
    ----------
    z_um : list of float
        Defocus values (for a measured PSF: the z of each of its planes, in order).
    exclude_um : [low, high], optional
        z values in this closed interval are dropped.
    wavelength_um, na : float, optional
        Emission wavelength and objective NA; required unless ``psf`` is given.
    pixel_size_um : float, optional
        Pixel size of every image; default each file's own.
    medium_index : float
        Refractive index n of the medium (NA < n).
    noise : float
        σ of the Gaussian noise, as a fraction of each source image's range (0: none).
    photons : float, optional
        Shot noise: photons at the normalised intensity 1 (None: none).
    psf : str, optional
        Measured PSF TIFF: ``(Y, X)`` for one z or ``(Z, Y, X)`` with one plane per ``z_um`` value; same
        pixel size as the images; its centre is the pixel ``[ny // 2, nx // 2]``.
    seed : int
        Seed of the noise (each pair's noise depends on (seed, source name, z), not on the order).
    channel_name : str, optional
        Channel name written to the files; default the source file's, else ``fluorescence``.
    """

    z_um: list[float]
    exclude_um: list[float] | None = None
    wavelength_um: float | None = None
    na: float | None = None
    pixel_size_um: float | None = None
    medium_index: float = 1.0
    noise: float = 0.0
    photons: float | None = None
    psf: str | None = None
    seed: int = 0
    channel_name: str | None = None

    def kept_z(self) -> list[float]:
        """``z_um`` without the values inside ``exclude_um``."""
        interval = (self.exclude_um[0], self.exclude_um[1]) if self.exclude_um else None
        return drop_inside(self.z_um, interval)


@dataclass
class Source:
    """One in-focus image, read and checked (its pixels are read again when its pairs are made)."""

    path: Path
    name: str
    shape: tuple[int, int]
    pixel_size_um: float
    low: float
    high: float
    channel_name: str


@dataclass
class DefocusPairs:
    """What :func:`make_defocus_pairs` wrote: the manifest, one entry per pair, and the counts."""

    manifest: Path
    pairs: list[dict] = field(default_factory=list)
    written: int = 0
    skipped: int = 0


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def check_settings(settings: DefocusSettings) -> None:
    """Refuse bad settings, naming the flag and the fix.

    Raises
    ------
    UserError
        NaN/∞, NA ≤ 0 or NA ≥ n, n < 1, an implausible wavelength or pixel size, σ < 0, photons ≤ 0,
        missing optics without ``psf``, or no z left after the exclusion.
    """
    numbers: dict[str, Sequence[float | None]] = {
        "--z-um": settings.z_um, "--exclude-um": settings.exclude_um or [], "--na": [settings.na],
        "--wavelength-um": [settings.wavelength_um], "--pixel-size-um": [settings.pixel_size_um],
        "--medium-index": [settings.medium_index], "--noise": [settings.noise], "--photons": [settings.photons]}
    for flag, values in numbers.items():
        if not all(v is None or _finite(v) for v in values):
            raise UserError(f"{flag} {','.join(map(str, values))}: every value must be a finite number (not nan or inf)")
    if not settings.z_um:
        raise UserError("--z-um needs at least one value, e.g. --z-um -12:8")
    if settings.medium_index < 1:
        raise UserError(f"--medium-index {settings.medium_index}: a refractive index is ≥ 1 (air 1.0, water 1.33, "
                        "oil 1.515)")
    if settings.psf is None:
        for flag, value in (("--na", settings.na), ("--wavelength-um", settings.wavelength_um)):
            if value is None:
                raise UserError(f"{flag} is required to compute the defocus PSF; add {flag} (or give a measured --psf)")
    if settings.na is not None and not 0 < settings.na < settings.medium_index:
        raise UserError(f"--na {settings.na}: the objective NA must be above 0 and below the medium's refractive index "
                        f"{settings.medium_index} (set --medium-index: water 1.33, oil 1.515)")
    check_wavelength_um(settings.wavelength_um, required=False)
    check_pixel_size_um(settings.pixel_size_um, required=False)
    if settings.noise < 0:
        raise UserError(f"--noise {settings.noise} must be ≥ 0 (σ as a fraction of each image's range; 0 = no noise)")
    if settings.photons is not None and settings.photons <= 0:
        raise UserError(f"--photons {settings.photons} must be > 0 (photons at the normalised intensity 1)")
    if not settings.kept_z():
        low, high = settings.exclude_um or (0.0, 0.0)
        raise UserError(f"--z-um {','.join(f'{z:g}' for z in settings.z_um)}: every value lies inside --exclude-um "
                        f"{low:g}:{high:g}; give z values outside it or a narrower --exclude-um")


def read_plane(path: str | os.PathLike) -> tuple[np.ndarray, float | None, list[str]]:
    """One fluorescence plane ``(Y, X)`` as float64, checked finite and not constant, with its pixel size and
    channel names (leading axes of length 1 are dropped).

    Raises
    ------
    UserError
        Missing or unreadable file, not 2D, NaN/∞ pixels, or a constant image.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: image not found; check the path")
    array, meta = read_image(path)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise UserError(f"{path}: a {'×'.join(map(str, array.shape))} image; defocus pairs are made from single "
                        "in-focus planes (Y, X): save each channel or plane as its own file")
    array = as_float32(array, path)
    check_finite(array, path)
    check_not_constant(array, path, "image")
    return array.astype(np.float64), meta.pixel_size_um, meta.channel_names


def scale_to_range(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """``(image − low) / (high − low)``: the source's range becomes 0…1."""
    return (image - low) / (high - low)


def _read_source(path: str | os.PathLike, settings: DefocusSettings) -> Source:
    plane, file_px, names = read_plane(path)
    px = settings.pixel_size_um if settings.pixel_size_um is not None else file_px
    if px is None:
        raise UserError(f"{path}: the file does not record its pixel size; add --pixel-size-um (µm per pixel)")
    check_pixel_size_um(px)
    channel = settings.channel_name or (names[0] if len(names) == 1 and names[0] else DEFAULT_CHANNEL)
    return Source(path=Path(path), name=output_path(Path("."), Path(path)).stem, shape=(plane.shape[0], plane.shape[1]),
                  pixel_size_um=float(px), low=float(plane.min()), high=float(plane.max()), channel_name=channel)


def read_measured_psf(settings: DefocusSettings, pixel_sizes: set[float]) -> dict[float, np.ndarray]:
    """The measured PSF's planes as normalised centred kernels, by z (excluded planes left out).

    Raises
    ------
    UserError
        Unreadable, not 2D/3D, NaN, no positive pixels, a plane count other than the number of ``--z-um``
        values, or a recorded pixel size other than the images'.
    """
    assert settings.psf is not None
    path = Path(settings.psf)
    if not path.exists():
        raise UserError(f"{path}: --psf file not found; check the path")
    array, meta = read_image(path)
    array = as_float32(array, path)
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (2, 3):
        raise UserError(f"--psf {path}: a {'×'.join(map(str, array.shape))} array; give a (Y, X) PSF or a (Z, Y, X) "
                        "stack of PSF planes")
    check_finite(array, path)
    planes = array[None] if array.ndim == 2 else array
    if len(planes) != len(settings.z_um):
        raise UserError(f"--psf {path}: {len(planes)} plane(s) but {len(settings.z_um)} --z-um value(s); give one z per "
                        f"PSF plane, in file order (e.g. --z-um -4:4:2 for 5 planes)")
    if meta.pixel_size_um:
        for px in pixel_sizes:
            if abs(meta.pixel_size_um / px - 1) > PSF_PIXEL_TOLERANCE:
                raise UserError(f"--psf {path}: pixel size {meta.pixel_size_um:g} µm but the images have {px:g} µm; "
                                "resample the PSF to the images' pixel size")
    kept = set(settings.kept_z())
    kernels = {}
    for z, plane in zip(settings.z_um, planes):
        if z in kept:
            try:
                kernels[z] = normalize_psf(plane)
            except ValueError:
                raise UserError(f"--psf {path}: the plane at z = {z:g} µm has no positive pixels; "
                                "give a PSF image (a bead), background-subtracted") from None
    return kernels


def psf_sha256(path: str | None) -> str | None:
    """SHA-256 of the measured PSF file (a rerun with another PSF would mix pairs)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None


def defocused_input(target: np.ndarray, z_um: float, settings: DefocusSettings, pixel_size_um: float,
                    rng: np.random.Generator, kernel: np.ndarray | None = None) -> np.ndarray:
    """The input of one pair: ``target`` (0…1) blurred at ``z_um`` (computed PSF, or the measured ``kernel``),
    then shot noise (``photons``) and Gaussian noise (``noise``)."""
    if kernel is not None:
        image = blur(target, kernel, padding="reflect")
    else:
        assert settings.wavelength_um is not None and settings.na is not None
        image = defocus_image(target, z_um, pixel_size_um=pixel_size_um, wavelength_um=settings.wavelength_um,
                              na=settings.na, medium_index=settings.medium_index)
    if settings.photons is not None:
        image = add_poisson_noise(np.clip(image, 0.0, None), settings.photons, rng)  # FFT round-off can dip below 0
    if settings.noise > 0:
        image = add_gaussian_noise(image, settings.noise, rng)
    return image


def pair_name(source: str, z_um: float) -> str:
    """``NAME_zZ.tif`` (e.g. ``a01_z-12.tif``)."""
    return f"{source}_z{z_um:g}.tif"


def _recorded(settings: DefocusSettings) -> dict:
    return {"settings": json.loads(json.dumps(asdict(settings))), "psf_sha256": psf_sha256(settings.psf)}


def _check_resumable(folder: Path, log: Path, recorded: dict) -> None:
    """Refuse ``folder`` if it holds pairs made with other settings (resuming would mix them)."""
    if not log.exists():
        return
    try:
        previous = json.loads(log.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        previous = None
    if isinstance(previous, dict) and {k: previous.get(k) for k in recorded} == recorded:
        return
    pairs = list((folder / "input").glob("*.tif")) if (folder / "input").is_dir() else []
    if pairs or (isinstance(previous, dict) and previous.get("pairs")):
        what = "other settings" if isinstance(previous, dict) else f"unknown settings (unreadable {log.name})"
        raise UserError(f"{folder}: holds {len(pairs)} defocused image(s) made with {what} ({log}); use another --out, "
                        "or rerun with the same settings to resume")


def _pair_seed(settings: DefocusSettings, source: str, z_um: float) -> list[int]:
    return [settings.seed, zlib.crc32(source.encode("utf-8")), settings.z_um.index(z_um)]


def _target(source: Source) -> np.ndarray:
    """The source image scaled to its range (read again: only one image is held in memory at a time)."""
    return scale_to_range(read_plane(source.path)[0], source.low, source.high)


def _target_record(source: Source) -> dict:
    return {"quantity": "fluorescence", "normalization": NORMALIZATION, "source": source.name,
            "source_min": source.low, "source_max": source.high}


def _pair_record(source: Source, z_um: float, settings: DefocusSettings) -> dict:
    return {**Acquisition(defocus_um=z_um, na=settings.na, wavelength_um=settings.wavelength_um).to_dict(),
            **_target_record(source), "noise_sigma_of_range": settings.noise,
            "photons": settings.photons, "medium_index": settings.medium_index,
            "psf": Path(settings.psf).name if settings.psf else "scalar pupil (optics.defocus)"}


def make_defocus_pairs(images: Sequence[str | os.PathLike], out: str | os.PathLike, settings: DefocusSettings, *,
                       log: Callable[[str], None] | None = None) -> DefocusPairs:
    """Write defocused / in-focus pairs of every image at every kept z, and their manifest.

    Parameters
    ----------
    images : sequence of path-like
        In-focus fluorescence images, one ``(Y, X)`` plane each (TIFF or PNG).
    out : path-like
        Output folder (``input/``, ``target/``, ``manifest.csv``, ``defocus_pairs.json``).
    settings : DefocusSettings
        Optics, z values, noise.
    log : callable, optional
        Receives one progress line per z.

    Returns
    -------
    DefocusPairs

    Raises
    ------
    UserError
        Bad settings, a missing / non-2D / NaN / constant image, an unusable measured PSF, two images with one
        name, an output that is an input, an unwritable ``out`` or one holding pairs made with other settings;
        all before anything is written.
    """
    check_settings(settings)
    if not images:
        raise UserError("give in-focus images (IMAGES...)")
    sources = [_read_source(path, settings) for path in images]  # all read and checked before anything is written
    kernels = read_measured_psf(settings, {s.pixel_size_um for s in sources}) if settings.psf else {}
    z_values = settings.kept_z()
    folder = Path(out)
    targets = [folder / "target" / f"{s.name}.tif" for s in sources]
    inputs = [folder / "input" / pair_name(s.name, z) for s in sources for z in z_values]
    log_path = folder / LOG_NAME
    refuse_duplicate_outputs(targets, "images (same file name)")
    refuse_overwriting_inputs(targets + inputs + [folder / "manifest.csv", log_path], [*images, settings.psf])
    recorded = _recorded(settings)
    _check_resumable(folder, log_path, recorded)
    ensure_writable_dir(folder)
    remove_stale_parts(targets + inputs)
    write_text_atomic(log_path, json.dumps({**recorded, "pairs": []}, indent=2))
    result = DefocusPairs(manifest=folder / "manifest.csv")
    rows = []
    for source, target_path in zip(sources, targets):
        if not target_path.exists():
            write_tiff(target_path, _target(source)[None], pixel_size_um=source.pixel_size_um,
                       channel_names=[source.channel_name], description=_target_record(source))
    for i, z in enumerate(z_values, start=1):  # z outside: every source of one shape reuses the z's PSF
        todo = [s for s in sources if not (folder / "input" / pair_name(s.name, z)).exists()]
        for source in todo:
            rng = np.random.default_rng(_pair_seed(settings, source.name, z))
            image = defocused_input(_target(source), z, settings, source.pixel_size_um, rng, kernels.get(z))
            write_tiff(folder / "input" / pair_name(source.name, z), image[None], pixel_size_um=source.pixel_size_um,
                       channel_names=[source.channel_name], description=_pair_record(source, z, settings))
        result.written += len(todo)
        result.skipped += len(sources) - len(todo)
        if log is not None:
            skipped = len(sources) - len(todo)
            log(f"[{i}/{len(z_values)}] z = {z:g} µm: {len(todo)} pair(s) written"
                + (f", {skipped} already there" if skipped else ""))
    for source in sources:
        for z in z_values:
            name = pair_name(source.name, z)
            rows.append({"input": f"input/{name}", "target": f"target/{source.name}.tif", "group": source.name,
                         "pixel_size_um": source.pixel_size_um})
            result.pairs.append({"name": name, "shape": list(source.shape), "pixel_size_um": source.pixel_size_um,
                                 **_pair_record(source, z, settings)})
    write_text_atomic(log_path, json.dumps({**recorded, "pairs": result.pairs}, indent=2))
    write_csv_atomic(result.manifest, rows, MANIFEST_COLUMNS)
    return result
