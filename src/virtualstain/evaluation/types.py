"""The typed results of an evaluation, and the on-disk forms they produce.

:class:`ImageRow` holds one image × channel (:class:`PixelScores`, VirFluoNet's :class:`ToleranceScores`,
:class:`BaselineScores` and, for channels with an object readout, :class:`ObjectScores`);
:class:`ChannelSummary` pools one channel (with its :class:`ToleranceCurve`, :class:`ObjectSummary` and
its :class:`Verdict` list); :class:`Evaluation` holds both, plus the arrays the report draws
(:class:`Panel`, :class:`ChannelPool`) and the judge's check on itself (:class:`NucleiRulers`,
:class:`Disagreement`).

Units
-----
Intensities are in the target's units. Lengths are in µm when the pixel size is known and in pixels
when it is not; areas in µm² or px². The typed fields are unit-free (``displacement_median``,
``area_target_median``); :attr:`Evaluation.length_unit` says which. On disk the name follows the unit,
built by :func:`~virtualstain.data.units.length_key`: ``displacement_median_um`` /
``area_target_median_um2`` with a pixel size, ``displacement_median_px`` / ``area_target_median_px2``
without one. (Before, such columns said ``_um`` while they held pixels.) Otherwise ``metrics.csv``
(:meth:`Evaluation.csv_columns`, :meth:`Evaluation.csv_rows`) and ``summary.json``
(:meth:`Evaluation.summary_dict`) keep their columns, keys, order and values; VirFluoNet's judgements
(issue 15) added the :class:`ToleranceScores` columns after the pixel scores, and per channel
``error_area_fraction_mean``, ``tolerance_level``, ``tolerance_threshold``, ``tolerance_curve`` and the
per-image feature correlations.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from ..analysis.readouts import ObjectReadout, SegmenterComparison
from ..data.units import length_key, length_unit
from ..metrics.tolerance import THRESHOLD_FRACTIONS, ToleranceIndex
from ..metrics.uncertainty import UncertaintyCalibration

_POWER = "length_power"  # field metadata: 1 for a length, 2 for an area (its on-disk name follows the unit)
_LENGTH, _AREA = {_POWER: 1}, {_POWER: 2}  # metadata of fields in µm / µm² (px / px² without a pixel size)
#: The records written as flat columns / keys.
_Flat: TypeAlias = "PixelScores | ToleranceScores | BaselineScores | ObjectScores | ObjectSummary"


def _disk_name(f: dataclasses.Field, pixel_size_um: float | None, prefix: str = "") -> str:
    power = f.metadata.get(_POWER)
    return prefix + (length_key(f.name, pixel_size_um, power) if power else f.name)


def _disk_dict(record: _Flat, pixel_size_um: float | None, prefix: str = "") -> dict:
    """A flat dataclass as ``{on-disk name: value}``, in field order."""
    return {_disk_name(f, pixel_size_um, prefix): getattr(record, f.name) for f in dataclasses.fields(record)}


def _disk_names(kind: type[_Flat], pixel_size_um: float | None, prefix: str = "") -> list[str]:
    return [_disk_name(f, pixel_size_um, prefix) for f in dataclasses.fields(kind)]


def _json_safe(value: Any) -> Any:
    """``value`` with NaN/inf as None and numpy scalars as Python numbers, inside dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    return value


@dataclass
class PixelScores:
    """Pixel metrics of a prediction against its target (see :func:`~virtualstain.evaluation.scoring.score_channel`).

    Attributes
    ----------
    pearson_r, segmentation_pcc, ssim : float
        Unitless; NaN where undefined.
    psnr : float
        dB, with :attr:`data_range` as the peak.
    nrmse : float
        RMSE / :attr:`data_range`.
    mae : float
        Mean absolute error, target units.
    data_range : float
        The target's max − min, target units.
    """

    pearson_r: float
    segmentation_pcc: float
    ssim: float
    psnr: float
    nrmse: float
    mae: float
    data_range: float


@dataclass
class ToleranceScores:
    """VirFluoNet's judgements of one image and channel (:mod:`virtualstain.metrics.tolerance`), with B = the
    target's range (max − min) and D = |prediction − target|.

    Attributes
    ----------
    tolerance_level : float
        TL = min over t of IE(t) + SE(t), unitless (0 is a perfect copy).
    tolerance_threshold : float
        The t of that minimum, as a fraction of B.
    tolerance_intensity_error, tolerance_spatial_error : float
        IE and SE at that t: mean D of the tolerated pixels / B, and the area fraction with D > t.
    error_area_fraction : float
        Area fraction with D > 50/255 · B, VirFluoNet's thresholded error map (Fig. 5).

    All NaN for a constant target (B = 0).
    """

    tolerance_level: float = math.nan
    tolerance_threshold: float = math.nan
    tolerance_intensity_error: float = math.nan
    tolerance_spatial_error: float = math.nan
    error_area_fraction: float = math.nan

    @classmethod
    def of(cls, index: ToleranceIndex, error_area_fraction: float) -> ToleranceScores:
        """The scores of a :class:`~virtualstain.metrics.tolerance.ToleranceIndex` and the 50/255 error area."""
        i = index.best_index
        return cls(index.tolerance_level, float(THRESHOLD_FRACTIONS[i]), float(index.intensity_error[i]),
                   float(index.spatial_error[i]), error_area_fraction)


@dataclass
class BaselineScores:
    """Input-vs-target baseline: the best-correlating input channel, rescaled to the target by least squares.

    Attributes
    ----------
    pearson_r : float
        |r| of that channel; NaN without inputs.
    ssim, nrmse : float
        Of the rescaled input (NRMSE as a fraction of the target's range); NaN where undefined.
    """

    pearson_r: float = math.nan
    ssim: float = math.nan
    nrmse: float = math.nan


@dataclass
class ObjectScores:
    """Object readout of one image and channel (objects matched one to one at IoU ≥ 0.5).

    Attributes
    ----------
    count_target, count_prediction : int
        Objects segmented in the real and in the virtual stain.
    count_error : float
        (virtual − real) / real; NaN without real objects.
    precision, recall, f1 : float
        Of the matching.
    displacement_median : float
        Median centroid displacement of the matched objects, µm (px without a pixel size); NaN if none matched.
    area_ratio_median : float
        Median virtual / real area of the matched objects.
    segmenter_agreement_f1 : float
        With a second nuclei segmenter (:class:`NucleiRulers`): F1 (IoU 0.5) between the judge's and its
        objects in the real stain (low = the two rulers disagree on this image); NaN without one.
    """

    count_target: int
    count_prediction: int
    count_error: float
    precision: float
    recall: float
    f1: float
    displacement_median: float = field(metadata=_LENGTH)
    area_ratio_median: float
    segmenter_agreement_f1: float = float("nan")

    @classmethod
    def of(cls, readout: ObjectReadout) -> ObjectScores:
        """The scores of an :class:`~virtualstain.analysis.readouts.ObjectReadout` (its lengths in µm or px)."""
        m, medians = readout.match, readout.row()
        return cls(m.n_true, m.n_predicted, m.count_error, m.precision, m.recall, m.f1,
                   medians["displacement_median_um"], medians["area_ratio_median"], readout.agreement_f1)


@dataclass
class ImageRow:
    """One image and channel: a row of ``metrics.csv``.

    Attributes
    ----------
    image, channel : str
        File name of the prediction, channel name.
    pixels : PixelScores
    baseline : BaselineScores
    readout : {"nuclei", "cells", "none"}
        The object readout of the channel.
    objects : ObjectScores or None
        None when ``readout`` is ``"none"``.
    note : str
        Why a score is not defined; empty when all are.
    region : str or None
        Bounds of a held-out test region in its field (JSON, input pixels), where the image is one.
    tolerance : ToleranceScores
        VirFluoNet's tolerance index and 50/255 error area (written after the pixel scores).
    """

    image: str
    channel: str
    pixels: PixelScores
    baseline: BaselineScores
    readout: str
    objects: ObjectScores | None = None
    note: str = ""
    region: str | None = None
    tolerance: ToleranceScores = field(default_factory=ToleranceScores)

    def csv_row(self, pixel_size_um: float | None) -> dict:
        """The row of ``metrics.csv``; object columns are absent (written empty) without an object readout."""
        row = {"image": self.image, "channel": self.channel, **_disk_dict(self.pixels, pixel_size_um),
               **_disk_dict(self.tolerance, pixel_size_um), **_disk_dict(self.baseline, pixel_size_um, "baseline_"),
               "readout": self.readout}
        if self.objects is not None:
            row.update(_disk_dict(self.objects, pixel_size_um))
        row["note"] = self.note
        if self.region is not None:
            row["region"] = self.region
        return row


def csv_columns(pixel_size_um: float | None) -> list[str]:
    """The columns of ``metrics.csv`` (a ``region`` column follows for held-out test regions)."""
    return ["image", "channel", *_disk_names(PixelScores, pixel_size_um), *_disk_names(ToleranceScores, pixel_size_um),
            *_disk_names(BaselineScores, pixel_size_um, "baseline_"), "readout",
            *_disk_names(ObjectScores, pixel_size_um), "note"]


@dataclass
class Verdict:
    """A plain-language judgement of one readout (see :mod:`~virtualstain.evaluation.verdicts`).

    Attributes
    ----------
    readout : str
        intensity, structure, counts, positions or areas.
    status : str
        One of :data:`~virtualstain.evaluation.verdicts.STATUSES`.
    text : str
        A sentence with the numbers behind it.
    """

    readout: str
    status: str
    text: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass
class ObjectSummary:
    """The object readouts of one channel, pooled over its images.

    Attributes
    ----------
    count_target_total, count_prediction_total : int
        Objects in all real / virtual images.
    count_error_total : float
        (virtual − real) / real over all images; NaN without real objects.
    count_error_abs_mean, f1_mean : float
        Means over the images (NaN ones left out).
    matched : int
        Matched pairs over all images.
    displacement_median, displacement_p90 : float
        Median and 90th percentile of the matched centroids' displacements, µm (px without a pixel size).
    area_target_median, area_prediction_median : float
        Median object areas, µm² (px²).
    area_ratio_median : float
        Mean over the images of their median virtual / real area ratio.
    feature_pearson_r : dict of str to float
        Pearson r, real vs virtual, of each per-object feature over the matched pairs of all images (pooled).
    feature_pearson_r_per_image : dict of str to list of float
        The same r within each image (over its own matched pairs), one per image in order; NaN where an
        image has fewer than 3 pairs or the feature is constant in it.
    feature_pearson_r_image_median : dict of str to float
        Median of each feature's per-image r (NaN ones left out).
    """

    count_target_total: int
    count_prediction_total: int
    count_error_total: float
    count_error_abs_mean: float
    f1_mean: float
    matched: int
    displacement_median: float = field(metadata=_LENGTH)
    displacement_p90: float = field(metadata=_LENGTH)
    area_target_median: float = field(metadata=_AREA)
    area_prediction_median: float = field(metadata=_AREA)
    area_ratio_median: float
    feature_pearson_r: dict[str, float]
    feature_pearson_r_per_image: dict[str, list[float]] = field(default_factory=dict)
    feature_pearson_r_image_median: dict[str, float] = field(default_factory=dict)


@dataclass
class ToleranceCurve:
    """VirFluoNet's tolerance curve of one channel: IE, SE and their sum per threshold, averaged over its images.

    Attributes
    ----------
    threshold_fraction : numpy.ndarray
        (100,) t_i / B = 0, 0.01, …, 0.99 (B: each target's range).
    intensity_error, spatial_error, total : numpy.ndarray
        (100,) means over the images of IE(t_i), SE(t_i) and IE + SE (each image's curve:
        :attr:`ChannelPool.tolerance`).
    """

    threshold_fraction: np.ndarray
    intensity_error: np.ndarray
    spatial_error: np.ndarray
    total: np.ndarray

    @property
    def best_index(self) -> int:
        """i of the mean curve's minimum (the first one, on ties)."""
        return int(np.argmin(self.total))

    @property
    def tolerance_level(self) -> float:
        """The mean curve's minimum: the channel's TL."""
        return float(self.total[self.best_index])

    @property
    def best_threshold(self) -> float:
        """The threshold of that minimum, fraction of the range."""
        return float(self.threshold_fraction[self.best_index])

    def to_dict(self) -> dict[str, list[float]]:
        """The curve in ``summary.json``: lists of 100 values each."""
        return {"threshold_fraction": self.threshold_fraction.tolist(), "intensity_error": self.intensity_error.tolist(),
                "spatial_error": self.spatial_error.tolist(), "total": self.total.tolist()}


@dataclass
class ChannelSummary:
    """One channel pooled over its images: a channel of ``summary.json``.

    Attributes
    ----------
    n_images : int
    readout : {"nuclei", "cells", "none"}
    pearson_r_mean, pearson_r_median : float
        Of the images' r (NaN ones left out).
    accuracy_score_p : float
        FRM's accuracy score P: mean r over the images whose target has signal; NaN if none has.
    p_images_with_signal : int
        Images counted in P.
    segmentation_pcc_mean, ssim_mean, psnr_mean, nrmse_mean, mae_mean : float
        Means over the images (PSNR in dB, MAE in target units).
    baseline_pearson_r_mean, baseline_ssim_mean : float
        Means of the input-vs-target baseline.
    error_area_fraction_mean : float
        Mean over the images of the area fraction with |error| > 50/255 of the target's range.
    tolerance_curve : ToleranceCurve or None
        VirFluoNet's tolerance curve averaged over the images (None if every target is constant); its
        minimum and threshold are written as ``tolerance_level`` and ``tolerance_threshold``.
    undefined : list of str
        ``"image: why"`` for every image with a score not defined.
    objects : ObjectSummary or None
        None when ``readout`` is ``"none"``.
    verdicts : list of Verdict
    """

    n_images: int
    readout: str
    pearson_r_mean: float
    pearson_r_median: float
    accuracy_score_p: float
    p_images_with_signal: int
    segmentation_pcc_mean: float
    ssim_mean: float
    psnr_mean: float
    nrmse_mean: float
    mae_mean: float
    baseline_pearson_r_mean: float
    baseline_ssim_mean: float
    error_area_fraction_mean: float = math.nan
    tolerance_curve: ToleranceCurve | None = None
    undefined: list[str] = field(default_factory=list)
    objects: ObjectSummary | None = None
    verdicts: list[Verdict] = field(default_factory=list)

    def to_dict(self, pixel_size_um: float | None) -> dict:
        """The channel's entry of ``summary.json`` (NaN kept; see :meth:`Evaluation.summary_dict`)."""
        nested = ("objects", "verdicts", "tolerance_curve")
        entry = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in nested}
        curve = self.tolerance_curve
        entry.update(tolerance_level=curve.tolerance_level if curve else math.nan,
                     tolerance_threshold=curve.best_threshold if curve else math.nan,
                     tolerance_curve=curve.to_dict() if curve else None)
        if self.objects is not None:
            entry.update(_disk_dict(self.objects, pixel_size_um))
        return {**entry, "verdicts": [v.to_dict() for v in self.verdicts]}


@dataclass
class Panel:
    """The arrays of one image and channel kept for the report's picture panels (target units; Y, X or Z, Y, X).

    ``input`` holds every input channel (C_in, ...); ``ssim_map`` is None where SSIM is not defined and
    ``readout`` None for channels without an object readout.
    """

    image: str
    channel: str
    prediction: np.ndarray
    target: np.ndarray
    input: np.ndarray | None
    ssim_map: np.ndarray | None
    readout: ObjectReadout | None


@dataclass
class SigmaPanel:
    """A test image's calibrated σ and its absolute error, for the report (target units; Y, X or Z, Y, X)."""

    image: str
    channel: str
    sigma: np.ndarray
    abs_error: np.ndarray


@dataclass(frozen=True)
class NucleiRulers:
    """The nuclei segmenters of an evaluation, by name (``"classical"``, ``"learned"``, ``"cellpose"``).

    Attributes
    ----------
    judge : str
        The segmenter of both images of every nuclei channel.
    other : str or None
        The segmenter compared with it on every real nuclear stain (:class:`Disagreement`): the classical method
        when another one judges, the learned one when the classical one judges; None: no comparison.
    """

    judge: str = "classical"
    other: str | None = None


@dataclass
class Disagreement:
    """Where the two nuclei rulers (:class:`NucleiRulers`) disagree on the real stain of one image and channel.

    Attributes
    ----------
    image, channel : str
        As in the rows.
    n_judge, n_other : int
        Objects found by the judge and by the other segmenter.
    matched : int
        Pairs matched one to one at IoU ≥ 0.5.
    f1 : float
        Their agreement, ``2 · matched / (n_judge + n_other)``; NaN when neither found an object.
    target : numpy.ndarray or None
        The real stain ``(Y, X)`` (Z maximum projection of a volume), float32, kept with ``comparison`` for the
        report's panels of the images where the rulers disagree most; None for the others.
    comparison : SegmenterComparison or None
        Both label images and their matching; None where ``target`` is None.
    """

    image: str
    channel: str
    n_judge: int
    n_other: int
    matched: int
    f1: float
    target: np.ndarray | None = field(default=None, repr=False)
    comparison: SegmenterComparison | None = field(default=None, repr=False)

    @classmethod
    def of(cls, image: str, channel: str, target: np.ndarray, comparison: SegmenterComparison) -> Disagreement:
        """The counts of ``comparison``, keeping it and ``target`` (a volume is kept as its Z maximum projection)."""
        m = comparison.match
        plane = target.max(axis=0) if target.ndim == 3 else target
        return cls(image, channel, m.n_true, m.n_predicted, m.true_positives, m.f1, plane.astype(np.float32),
                   comparison)

    @property
    def agreement(self) -> float:
        """:attr:`f1`, with no object in either segmenter counted as full agreement (1)."""
        return self.f1 if math.isfinite(self.f1) else 1.0

    @property
    def only_judge(self) -> int:
        """Objects of the judge without a match in the other segmenter."""
        return self.n_judge - self.matched

    @property
    def only_other(self) -> int:
        """Objects of the other segmenter without a match in the judge's."""
        return self.n_other - self.matched

    def without_arrays(self) -> Disagreement:
        """The counts only (the arrays dropped)."""
        return dataclasses.replace(self, target=None, comparison=None)


@dataclass
class ChannelPool:
    """What the summary and the plots need from every image of one channel, in the order the images came.

    Attributes
    ----------
    kind : {"nuclei", "cells", "none"}
        The channel's object readout.
    small_targets : list of numpy.ndarray
        Every 4th pixel along Y and X of each target (float32), for the pooled signal threshold of P.
    pairs : list of numpy.ndarray
        (2, n) subsampled (target, prediction) pixels of each image.
    displacement : list of numpy.ndarray
        Centroid displacements of each image's matched objects, µm (px without a pixel size).
    area_target, area_prediction : list of numpy.ndarray
        Areas of each image's real / virtual objects, µm² (px²).
    features_real, features_virtual : list of dict of str to numpy.ndarray
        Per-object features of each image's matched pairs.
    feature_r : list of dict of str to float
        Each image's real-vs-virtual Pearson r per feature (over its own matched pairs).
    tolerance : list of ToleranceIndex
        VirFluoNet's tolerance curve of each image whose target is not constant (B = its range).
    """

    kind: str = "none"
    small_targets: list[np.ndarray] = field(default_factory=list)
    pairs: list[np.ndarray] = field(default_factory=list)
    displacement: list[np.ndarray] = field(default_factory=list)
    area_target: list[np.ndarray] = field(default_factory=list)
    area_prediction: list[np.ndarray] = field(default_factory=list)
    features_real: list[dict[str, np.ndarray]] = field(default_factory=list)
    features_virtual: list[dict[str, np.ndarray]] = field(default_factory=list)
    feature_r: list[dict[str, float]] = field(default_factory=list)
    tolerance: list[ToleranceIndex] = field(default_factory=list)


@dataclass
class Evaluation:
    """Result of :class:`~virtualstain.evaluation.scoring.Evaluator` (and of ``evaluate_files``).

    Attributes
    ----------
    rows : list of ImageRow
        One per image and channel, in the order they were scored.
    channels : dict of str to ChannelSummary
        Per channel: pooled metrics, readouts and verdicts.
    pixel_size_um : float or None
        µm per pixel of the (first) target; None when unknown, and lengths are in pixels.
    panels : list of Panel
        The arrays of the first images, for the report.
    pools : dict of str to ChannelPool
        Per channel, the pooled arrays for the summary and the plots.
    out : Path or None
        Folder with ``metrics.csv``, ``summary.json`` and ``report.html`` once written.
    rulers : NucleiRulers
        Which nuclei segmenter judged, and which one it was compared with.
    disagreements : list of Disagreement
        Per image and nuclei channel, where the two rulers disagree (empty without a second segmenter); the
        arrays are kept for the images where they agree least.
    uncertainty : UncertaintyCalibration or None
        The model's σ calibration and how it held on these images (a training run's test regions), for the report.
    sigma_panels : list of SigmaPanel
        σ and |error| maps of the first image per channel.
    """

    rows: list[ImageRow]
    channels: dict[str, ChannelSummary]
    pixel_size_um: float | None = None
    panels: list[Panel] = field(default_factory=list, repr=False)
    pools: dict[str, ChannelPool] = field(default_factory=dict, repr=False)
    out: Path | None = None
    rulers: NucleiRulers = field(default_factory=NucleiRulers)
    disagreements: list[Disagreement] = field(default_factory=list, repr=False)
    uncertainty: UncertaintyCalibration | None = None
    sigma_panels: list[SigmaPanel] = field(default_factory=list, repr=False)

    @property
    def length_unit(self) -> str:
        """``"µm"``, or ``"px"`` when the pixel size is unknown."""
        return length_unit(self.pixel_size_um)

    @property
    def n_images(self) -> int:
        """Distinct images scored."""
        return len({r.image for r in self.rows})

    def csv_columns(self) -> list[str]:
        """The header of ``metrics.csv``: :func:`csv_columns`, then ``region`` where a row has one."""
        region = ["region"] if any(r.region is not None for r in self.rows) else []
        return csv_columns(self.pixel_size_um) + region

    def csv_rows(self) -> list[dict]:
        """The rows of ``metrics.csv`` (NaN written as ``nan``; absent columns empty)."""
        return [r.csv_row(self.pixel_size_um) for r in self.rows]

    def summary_dict(self) -> dict:
        """The content of ``summary.json``, ready for :func:`json.dumps` (NaN as None)."""
        return _json_safe({"pixel_size_um": self.pixel_size_um, "length_unit": self.length_unit,
                          "n_images": self.n_images,
                          "channels": {name: s.to_dict(self.pixel_size_um) for name, s in self.channels.items()}})
