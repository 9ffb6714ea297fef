"""The learned nuclei segmenter shipped with virtualstain: rescale to a canonical nucleus size, predict, split.

Importing this module does not load torch; running the learned method does.

1. The typical nucleus diameter d of the image is estimated from the image
   (:func:`~virtualstain.analysis.estimate_nucleus_diameter`), and the image is resized by
   ``CANONICAL_DIAMETER_PX / d`` (bounded to [1/8, 4]) so that its nuclei are the size the network was
   trained on; one model then works across magnifications and microscopes.
2. The shipped U-Net (``virtualstain/weights/nuclei``: safetensors + JSON, checksummed, see its
   ``MODEL_CARD.md``) predicts the foreground and normalised-distance maps
   (:mod:`virtualstain.analysis.learned_nuclei`), tiled and mirror-padded as every prediction.
3. The maps are resized back and split into instances by a seeded watershed
   (:func:`~virtualstain.analysis.learned_nuclei.instances_from_maps`).

cellpose's nuclei model (:func:`segment_nuclei_cellpose`) is a third method where the ``cellpose`` package is
installed (``pip install "virtualstain[cellpose]"``); it gets the same size estimate as its diameter.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from skimage.transform import resize

from ...analysis import estimate_nucleus_diameter
from ...analysis.learned_nuclei import CANONICAL_DIAMETER_PX, instances_from_maps
from ...analysis.readouts import NucleiSegmenter
from ...errors import UserError

if TYPE_CHECKING:
    from ...models.bundle import ModelBundle

#: Where the shipped bundle lives inside the package.
SHIPPED = Path(__file__).resolve().parents[2] / "weights" / "nuclei"
#: The method ``segment`` and the judge use unless told: the one with the better scores on the held-out
#: reference sets (``benchmarks/bench_segmenter.py``; F1 at IoU 0.5, learned vs classical: BBBC039 0.899 vs
#: 0.857, StarDist right half 0.899 vs 0.807, celldetective 0.957 vs 0.915, CTC SIM+ 0.858 vs 0.876).
DEFAULT_NUCLEI_METHOD = "learned"
#: The judge's default (``evaluate``, the training workflow's test regions): classical, because the learned
#: segmenter, trained on real fluorescence, splits the smoother nuclei of virtual stains (the demo's virtual
#: nuclei: 145 learned objects for 90 real nuclei, the classical method 89 for 89).
JUDGE_NUCLEI_METHOD = "classical"
#: Every nuclei segmentation method (cellpose only where the cellpose package is installed).
NUCLEI_METHODS = ("classical", "learned", "cellpose")
#: Bounds of the resize factor: beyond them the image is far from anything the model saw.
_SCALE_BOUNDS = (1 / 8, 4.0)


@dataclass(frozen=True)
class WatershedSettings:
    """How the predicted maps become instances (chosen on the validation images, recorded in the bundle).

    Attributes
    ----------
    foreground_threshold, seed_threshold : float
        See :func:`~virtualstain.analysis.learned_nuclei.instances_from_maps`.
    min_area_fraction : float
        Objects below this fraction of a disc of the typical diameter are dropped.
    """

    foreground_threshold: float = 0.5
    seed_threshold: float = 0.5
    min_area_fraction: float = 0.05


@dataclass(frozen=True)
class LearnedSegmentation:
    """Nuclei found by the learned segmenter in one image.

    Attributes
    ----------
    labels : numpy.ndarray
        int32 instance labels ``(Y, X)`` of the input's shape.
    diameter_px : float
        The typical nucleus diameter estimated from the image (px).
    scale : float
        The resize factor the network saw the image at.
    """

    labels: np.ndarray
    diameter_px: float
    scale: float

    def describe(self) -> str:
        """One line for the terminal."""
        return (f"learned segmenter: typical nucleus diameter {self.diameter_px:.1f} px, "
                f"resized ×{self.scale:.2f} to {CANONICAL_DIAMETER_PX:g} px")


@functools.lru_cache(maxsize=2)
def load_segmenter(folder: str | None = None) -> tuple[ModelBundle, WatershedSettings]:
    """The segmenter bundle (the shipped one by default) and its split settings (``split.json``)."""
    from ...models.bundle import load_bundle  # torch: only when the learned method runs

    path = Path(folder) if folder else SHIPPED
    if not (path / "model.json").is_file():
        raise UserError(f"{path}: the learned nuclei segmenter is not installed here; reinstall virtualstain, or use "
                        "--method classical")
    settings_file = path / "split.json"
    try:
        settings = WatershedSettings(**json.loads(settings_file.read_text())) if settings_file.is_file() \
            else WatershedSettings()
    except (ValueError, TypeError) as exc:  # not JSON, or other fields
        raise UserError(f"{settings_file}: not the segmenter's watershed settings ({exc}); restore it from the "
                        "package, or delete it for the defaults") from None
    return load_bundle(path), settings


def segment_nuclei_learned(image: np.ndarray, model: str | None = None, settings: WatershedSettings | None = None,
                           diameter_px: float | None = None) -> LearnedSegmentation:
    """Instance labels of the nuclei in a 2D fluorescence image ``(Y, X)`` with the learned segmenter.

    Parameters
    ----------
    image : numpy.ndarray
        2D image with bright nuclei, any units.
    model : str, optional
        A segmenter bundle folder (default: the shipped one).
    settings : WatershedSettings, optional
        Overrides the bundle's split settings.
    diameter_px : float, optional
        The typical nucleus diameter (px) to rescale by; default estimated from ``image``.
    """
    img = np.asarray(image, np.float32)
    if img.ndim != 2:
        raise ValueError(f"segment_nuclei_learned expects a 2D image (Y, X), got shape {img.shape}")
    from ...inference.predict import predict

    bundle, shipped = load_segmenter(model)
    settings = settings or shipped
    diameter = estimate_nucleus_diameter(img).diameter_px if diameter_px is None else float(diameter_px)
    if not np.isfinite(diameter) or img.min() == img.max():
        return LearnedSegmentation(np.zeros(img.shape, np.int32), diameter, 1.0)
    scale = float(np.clip(CANONICAL_DIAMETER_PX / diameter, *_SCALE_BOUNDS))
    small_shape = tuple(max(16, round(n * scale)) for n in img.shape)
    small = resize(img, small_shape, order=1, anti_aliasing=scale < 1, preserve_range=True).astype(np.float32)
    maps = predict(bundle, small[None], source="segment --method learned")
    foreground = resize(maps[0], img.shape, order=1, preserve_range=True)
    distance = resize(maps[1], img.shape, order=1, preserve_range=True) / 100.0  # trained on 0…100
    min_area = settings.min_area_fraction * np.pi * diameter ** 2 / 4
    labels = instances_from_maps(foreground, distance, settings.foreground_threshold, settings.seed_threshold,
                                 min_area)
    return LearnedSegmentation(labels, diameter, scale)


def judge_segmenter(method: str | None = None) -> NucleiSegmenter | None:
    """The judge's nuclei segmenter for ``method`` (default :data:`JUDGE_NUCLEI_METHOD`); None = classical."""
    method = method or JUDGE_NUCLEI_METHOD
    if method not in NUCLEI_METHODS:
        raise UserError(f"nuclei segmenter {method!r} is unknown; use {', '.join(NUCLEI_METHODS)}")
    if method == "cellpose":
        return cellpose_nuclei_segmenter("evaluate --segmenter")
    return learned_nuclei_segmenter() if method == "learned" else None


def second_opinion(method: str | None = None) -> NucleiSegmenter | None:
    """The segmenter compared with the judge's ``method`` on every real nuclear stain: with the classical judge, the
    learned segmenter, loaded on its first nuclei channel (an evaluation without nuclei never loads torch); None
    otherwise (another judge is compared with the classical method, which the readout runs itself)."""
    if (method or JUDGE_NUCLEI_METHOD) != "classical":
        return None

    def segment(image: np.ndarray, diameter_px: float) -> np.ndarray:
        return segment_nuclei_learned(image, diameter_px=diameter_px).labels

    return segment


def learned_nuclei_segmenter(model: str | None = None) -> NucleiSegmenter:
    """The learned segmenter as the judge's :data:`~virtualstain.analysis.readouts.NucleiSegmenter`."""
    load_segmenter(model)  # fail now, not on the first nuclei channel

    def segment(image: np.ndarray, diameter_px: float) -> np.ndarray:
        return segment_nuclei_learned(image, model, diameter_px=diameter_px).labels

    return segment


@dataclass(frozen=True)
class CellposeSegmentation:
    """Nuclei found by cellpose's nuclei model in one image.

    Attributes
    ----------
    labels : numpy.ndarray
        int32 instance labels ``(Y, X)``.
    diameter_px : float
        The nucleus diameter cellpose was given (px).
    version : str
        The cellpose version that ran.
    """

    labels: np.ndarray
    diameter_px: float
    version: str

    def describe(self) -> str:
        """One line for the terminal (cellpose 4 has no nuclei model and runs its cpsam model instead)."""
        model = "nuclei" if int(self.version.split(".")[0]) < 4 else "cpsam (cellpose 4 has no nuclei model)"
        return f"cellpose {self.version} {model}, diameter {self.diameter_px:.1f} px"


@functools.lru_cache(maxsize=1)
def cellpose_model(flag: str):
    """cellpose's nuclei model, built once (its weights are downloaded into cellpose's cache on first use).

    ``flag`` (``"segment --method"``, ``"evaluate --segmenter"``) names the option in the errors: a UserError
    when cellpose is not installed, or when its weights are not cached and cannot be downloaded.
    """
    option = flag.split(" ")[-1]  # "--method"
    try:
        from cellpose import models  # type: ignore[import-not-found, import-untyped]
    except ImportError:
        raise UserError(f"{flag} cellpose needs the cellpose package: pip install cellpose "
                        f"(or use {option} learned|classical)") from None
    try:
        return models.CellposeModel(gpu=True, model_type="nuclei")  # falls back to the CPU without a GPU
    except OSError as exc:  # urllib's URLError, timeouts, a read-only cache
        cache = getattr(models, "MODEL_DIR", Path.home() / ".cellpose" / "models")
        raise UserError(f"cellpose could not fetch its nuclei model weights into {cache} ({exc}); run it "
                        "once with network access (the weights are cached there), or copy them into that folder "
                        f"(CELLPOSE_LOCAL_MODELS_PATH sets another), or use {option} learned|classical") from None


def _cellpose_version() -> str:
    """The installed cellpose's version (its nuclei model exists up to cellpose 3)."""
    return importlib.metadata.version("cellpose")


def segment_nuclei_cellpose(image: np.ndarray, diameter_px: float | None = None,
                            flag: str = "segment --method") -> CellposeSegmentation:
    """Instance labels of the nuclei in a 2D fluorescence image ``(Y, X)`` with cellpose's nuclei model.

    Parameters
    ----------
    image : numpy.ndarray
        2D image with bright nuclei, any units.
    diameter_px : float, optional
        The nucleus diameter (px) cellpose rescales by; default estimated from ``image``
        (:func:`~virtualstain.analysis.estimate_nucleus_diameter`), as for the learned method.
    flag : str
        The option that chose cellpose, for the errors of :func:`cellpose_model`.
    """
    img = np.asarray(image, np.float32)
    if img.ndim != 2:
        raise ValueError(f"segment_nuclei_cellpose expects a 2D image (Y, X), got shape {img.shape}")
    model = cellpose_model(flag)
    version = _cellpose_version()
    diameter = estimate_nucleus_diameter(img).diameter_px if diameter_px is None else float(diameter_px)
    if not np.isfinite(diameter) or img.min() == img.max():
        return CellposeSegmentation(np.zeros(img.shape, np.int32), diameter, version)
    masks = model.eval(img, channels=[0, 0], diameter=diameter)[0]
    return CellposeSegmentation(np.asarray(masks, np.int32), diameter, version)


def cellpose_nuclei_segmenter(flag: str) -> NucleiSegmenter:
    """cellpose's nuclei model as the judge's :data:`~virtualstain.analysis.readouts.NucleiSegmenter`."""
    cellpose_model(flag)  # fail now (not installed, no weights), not on the first nuclei channel

    def segment(image: np.ndarray, diameter_px: float) -> np.ndarray:
        return segment_nuclei_cellpose(image, diameter_px, flag).labels

    return segment
