"""Judge predictions against real stains, on arrays: pixel metrics, object readouts, a baseline, verdicts.

For every image and channel: Pearson r, segmentation-PCC, SSIM, PSNR, NRMSE, MAE (see
:mod:`virtualstain.metrics`), VirFluoNet's tolerance-level error index and the area where the error
exceeds 50/255 of the target's range (:mod:`virtualstain.metrics.tolerance`); for nuclei and junction
channels the object readouts of :mod:`virtualstain.analysis.readouts` (counts, F1@0.5, centroid
displacement, area ratio, per-object features); with the
label-free inputs given, the same pixel metrics for "input vs target" (the input channel that correlates
best, rescaled by least squares) as the baseline a model must beat; with a second nuclei segmenter, where it
and the judge's disagree on each real nuclear stain (:class:`~virtualstain.evaluation.types.Disagreement`).
Per channel, :mod:`~virtualstain.evaluation.summary` pools them (FRM's accuracy score P included) and
:mod:`~virtualstain.evaluation.verdicts` words them.

:class:`Evaluator` takes one image at a time (the arrays a workflow holds, or files read by
:mod:`virtualstain.workflows.stain.evaluate`) and returns an :class:`~virtualstain.evaluation.types.Evaluation`
of typed rows and summaries (their on-disk forms and units: :mod:`~virtualstain.evaluation.types`).
No torch, no files.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..analysis.readouts import READOUTS, NucleiSegmenter, ObjectReadout, object_readout, readout_for
from ..errors import UserError
from ..metrics import mae, nrmse, pearson_r, psnr, segmentation_pcc, ssim
from ..metrics.tolerance import ToleranceIndex, error_area_fraction, tolerance_index
from .summary import summarise
from .types import (
    BaselineScores,
    ChannelPool,
    Disagreement,
    Evaluation,
    ImageRow,
    NucleiRulers,
    ObjectScores,
    Panel,
    PixelScores,
    ToleranceScores,
)
from .verdicts import verdicts

_SMALL = 4  # keep every 4th pixel per axis of each target for the pooled signal threshold of P
_PAIRS = 20000  # (target, prediction) pixels kept per image for the joint histogram
_NAN = float("nan")


def score_channel(prediction: np.ndarray, target: np.ndarray) -> tuple[PixelScores, str]:
    """Pixel metrics of one channel, and a note saying which are not defined (empty when all are).

    Parameters
    ----------
    prediction, target : numpy.ndarray
        Same shape, (Y, X) or (Z, Y, X), target units.

    Returns
    -------
    PixelScores, str
        Pearson r, segmentation-PCC, SSIM and PSNR (data range = the target's max − min), NRMSE
        (RMSE / range), MAE. A constant target leaves r, SSIM, PSNR and NRMSE undefined (NaN).
    """
    span = float(target.max() - target.min())
    r, error = pearson_r(prediction, target), mae(prediction, target)
    if span == 0:
        return PixelScores(r, _NAN, _NAN, _NAN, _NAN, error, span), "not defined: the target is constant"
    note = ""
    try:
        structure = ssim(prediction, target, data_range=span)
    except ValueError as exc:
        structure, note = _NAN, f"SSIM not defined: {exc}"
    if not np.isfinite(r):
        note = "not defined: the prediction is constant"
    return PixelScores(r, segmentation_pcc(prediction, target), structure, psnr(prediction, target, data_range=span),
                       nrmse(prediction, target), error, span), note


def tolerance_channel(prediction: np.ndarray, target: np.ndarray,
                      data_range: float) -> tuple[ToleranceScores, ToleranceIndex | None]:
    """VirFluoNet's tolerance index and 50/255 error area of one channel, with B = ``data_range``.

    Parameters
    ----------
    prediction, target : numpy.ndarray
        Same shape, (Y, X) or (Z, Y, X), target units.
    data_range : float
        The target's max − min (target units); 0 leaves every score undefined.

    Returns
    -------
    ToleranceScores, ToleranceIndex or None
        The scores of the row, and the whole curve (None for a constant target).
    """
    if data_range == 0:
        return ToleranceScores(), None
    index = tolerance_index(prediction, target, data_range=data_range)
    return ToleranceScores.of(index, error_area_fraction(prediction, target, data_range)), index


def baseline_channel(inputs: np.ndarray | None, target: np.ndarray) -> BaselineScores:
    """Input-vs-target baseline: the input channel with the largest |r|, rescaled to the target by least squares.

    Parameters
    ----------
    inputs : numpy.ndarray or None
        (C_in, ...) label-free inputs on the target's grid.
    target : numpy.ndarray
        (...) one target channel.

    Returns
    -------
    BaselineScores
        |r| of that channel, SSIM and NRMSE of the rescaled input; NaN where undefined (no inputs,
        constant target or input).
    """
    if inputs is None:
        return BaselineScores()
    t = target.astype(np.float64)
    best, best_k = _NAN, -1
    for k, x in enumerate(inputs):
        r = abs(pearson_r(x, t))
        if np.isfinite(r) and not r <= best:
            best, best_k = r, k
    span = float(t.max() - t.min())
    if best_k < 0 or span == 0:
        return BaselineScores(pearson_r=best)
    x = inputs[best_k].astype(np.float64).ravel()
    slope, offset = np.polyfit(x, t.ravel(), 1)
    fitted = (slope * x + offset).reshape(t.shape)
    try:
        structure = ssim(fitted, t, data_range=span)
    except ValueError:
        structure = _NAN
    return BaselineScores(best, structure, nrmse(fitted, t))


def _subsample(prediction: np.ndarray, target: np.ndarray, n: int, seed: int) -> np.ndarray:
    idx = np.random.default_rng(seed).choice(target.size, size=min(n, target.size), replace=False)
    return np.stack([target.ravel()[idx], prediction.ravel()[idx]])


def _readout_kinds(names: list[str], readouts: Mapping[str, str] | None) -> dict[str, str]:
    kinds = {n: readout_for(n) for n in names}
    for name, kind in (readouts or {}).items():
        if kind not in READOUTS:
            raise UserError(f"readout for channel {name!r} must be one of {', '.join(READOUTS)}, got {kind!r}")
        if name not in kinds:
            raise UserError(f"readout given for channel {name!r} but the predictions' channels are "
                            f"{', '.join(names)}; use one of those names")
        kinds[name] = kind
    return kinds


def _channel_names(meta_names: list[str], n: int) -> list[str]:
    return list(meta_names) if len(meta_names) == n else [str(c) for c in range(n)]


def _pool_objects(pool: ChannelPool, readout: ObjectReadout) -> None:
    m = readout.match
    pool.displacement.append(m.displacement_um)
    pool.area_target.append(m.area_true_um2)
    pool.area_prediction.append(m.area_predicted_um2)
    pool.features_real.append(readout.features.real)
    pool.features_virtual.append(readout.features.virtual)
    pool.feature_r.append(readout.features.pearson_r)


def _panel(image: str, channel: str, prediction: np.ndarray, target: np.ndarray, inputs: np.ndarray | None,
           pixels: PixelScores, readout: ObjectReadout | None) -> Panel:
    ssim_map = None
    if np.isfinite(pixels.ssim):
        ssim_map = ssim(prediction, target, data_range=pixels.data_range, full=True)[1]
    return Panel(image, channel, prediction, target, inputs, ssim_map, readout)


def _rulers(name: str | None, injected: bool, second_opinion: bool) -> NucleiRulers:
    """The names of the judging and the compared nuclei segmenters (see :class:`Evaluator`)."""
    judge = name or ("learned" if injected else "classical")
    if injected:
        return NucleiRulers(judge, "classical")
    return NucleiRulers(judge, "learned" if second_opinion else None)


class Evaluator:
    """Score images one at a time, then pool them into an :class:`~virtualstain.evaluation.types.Evaluation`.

    Parameters
    ----------
    readouts : mapping of channel name to {"nuclei", "cells", "none"}, optional
        Object readout per channel; channels not named are decided by name (:func:`readout_for`).
    max_panels : int
        Images (the first ones) whose arrays are kept for the report's picture panels.
    nuclei_segmenter : callable, optional
        Segments nuclei channels instead of the classical method
        (:data:`~virtualstain.analysis.readouts.NucleiSegmenter`); the classical method then also segments
        each real nuclear stain, to show where the two disagree.
    nuclei_method : str, optional
        The name of the judging segmenter (default ``"classical"`` without ``nuclei_segmenter``, else
        ``"learned"``), for the report.
    second_opinion : callable, optional
        With the classical method judging: the learned segmenter, run once on each real nuclear stain to show
        where the two disagree (ignored with ``nuclei_segmenter``).
    """

    def __init__(self, readouts: Mapping[str, str] | None = None, max_panels: int = 4,
                 nuclei_segmenter: NucleiSegmenter | None = None, *, nuclei_method: str | None = None,
                 second_opinion: NucleiSegmenter | None = None):
        self.readouts = readouts
        self.nuclei_segmenter = nuclei_segmenter
        self.second_opinion = None if nuclei_segmenter is not None else second_opinion
        self.rulers = _rulers(nuclei_method, nuclei_segmenter is not None, self.second_opinion is not None)
        self.disagreements: list[Disagreement] = []
        self._held: list[int] = []  # indices of the disagreements whose arrays are kept
        self.max_panels = max_panels
        self.rows: list[ImageRow] = []
        self.panels: list[Panel] = []
        self.pools: dict[str, ChannelPool] = {}
        self.pixel_size_um: float | None = None
        self.n_images = 0

    def add(self, image: str, prediction: np.ndarray, target: np.ndarray, channel_names: list[str], *,
            inputs: np.ndarray | None = None, pixel_size_um: float | None = None,
            region: str | None = None) -> list[ImageRow]:
        """Score one image and return its rows (one per channel).

        Parameters
        ----------
        image : str
            Its name in the rows (the prediction's file name).
        prediction, target : numpy.ndarray
            (C, Y, X) or (C, Z, Y, X), the same shape, target units.
        channel_names : list of str
            One per channel (else the channels are named by index).
        inputs : numpy.ndarray, optional
            (C_in, ...) label-free inputs on the same grid, for the baseline and the panels.
        pixel_size_um : float, optional
            µm per pixel; lengths stay in pixels without it. The first image's sets the evaluation's unit.
        region : str, optional
            Bounds of a held-out test region (JSON), written in a ``region`` column.
        """
        pred, tgt = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
        x = None if inputs is None else np.asarray(inputs, np.float64)
        k = self.n_images
        self.n_images += 1
        if self.pixel_size_um is None:
            self.pixel_size_um = pixel_size_um
        names = _channel_names(channel_names, pred.shape[0])
        kinds = _readout_kinds(names, self.readouts)
        added = [self._add_channel(image, name, kinds[name], pred[c], tgt[c], x, k, pixel_size_um, region)
                 for c, name in enumerate(names)]
        self.rows += added
        return added

    def _add_channel(self, image: str, name: str, kind: str, prediction: np.ndarray, target: np.ndarray,
                     inputs: np.ndarray | None, k: int, pixel_size_um: float | None, region: str | None) -> ImageRow:
        """Score and pool one channel of the ``k``-th image."""
        pixels, note = score_channel(prediction, target)
        tolerance, curve = tolerance_channel(prediction, target, pixels.data_range)
        baseline = baseline_channel(inputs, target)
        pool = self.pools.setdefault(name, ChannelPool(kind=kind))
        pool.small_targets.append(target[..., ::_SMALL, ::_SMALL].astype(np.float32))
        pool.pairs.append(_subsample(prediction, target, _PAIRS, k))
        if curve is not None:
            pool.tolerance.append(curve)
        readout, objects = None, None
        if kind != "none":
            readout = object_readout(prediction, target, kind, pixel_size_um=pixel_size_um,
                                     nuclei_segmenter=self.nuclei_segmenter, second_opinion=self.second_opinion)
            if readout.comparison is not None:
                self._add_disagreement(Disagreement.of(image, name, target, readout.comparison))
            objects = ObjectScores.of(readout)
            _pool_objects(pool, readout)
            if readout.match.n_true == 0:
                note = (note + "; " if note else "") + f"count error not defined: no {kind} found in the target"
        if k < self.max_panels:  # the first images get picture panels
            self.panels.append(_panel(image, name, prediction, target, inputs, pixels, readout))
        return ImageRow(image, name, pixels, baseline, kind, objects, note, region, tolerance)

    def _add_disagreement(self, disagreement: Disagreement) -> None:
        """Keep its counts, and its arrays only while it is among the ``max_panels`` of least agreement."""
        self.disagreements.append(disagreement)
        self._held.append(len(self.disagreements) - 1)
        self._held.sort(key=lambda k: self.disagreements[k].agreement)  # stable: the earlier image wins a tie
        for k in self._held[self.max_panels:]:
            self.disagreements[k] = self.disagreements[k].without_arrays()
        del self._held[self.max_panels:]

    def finish(self) -> Evaluation:
        """Pool every image per channel and word the verdicts."""
        evaluation = Evaluation(self.rows, summarise(self.rows, self.pools), self.pixel_size_um, self.panels,
                                self.pools, rulers=self.rulers, disagreements=self.disagreements)
        for name, summary in evaluation.channels.items():
            summary.verdicts = verdicts(name, summary, evaluation.length_unit)
        return evaluation
