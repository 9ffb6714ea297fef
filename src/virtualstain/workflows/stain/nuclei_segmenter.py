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
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from skimage.transform import resize

from ...analysis import estimate_nucleus_diameter
from ...analysis.learned_nuclei import CANONICAL_DIAMETER_PX, instances_from_maps
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


def judge_segmenter(method: str | None = None) -> Callable[[np.ndarray, float], np.ndarray] | None:
    """The judge's nuclei segmenter for ``method`` (default :data:`JUDGE_NUCLEI_METHOD`); None = classical."""
    method = method or JUDGE_NUCLEI_METHOD
    if method not in ("classical", "learned"):
        raise UserError(f"nuclei segmenter {method!r} is unknown; use classical or learned")
    return learned_nuclei_segmenter() if method == "learned" else None


def learned_nuclei_segmenter(model: str | None = None) -> Callable[[np.ndarray, float], np.ndarray]:
    """The learned segmenter as the judge's :data:`~virtualstain.analysis.readouts.NucleiSegmenter`."""
    load_segmenter(model)  # fail now, not on the first nuclei channel

    def segment(image: np.ndarray, diameter_px: float) -> np.ndarray:
        return segment_nuclei_learned(image, model, diameter_px=diameter_px).labels

    return segment
