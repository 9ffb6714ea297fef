"""A self-contained HTML report of an evaluation: images embedded as base64 PNG, no scripts, opens offline."""

from __future__ import annotations

import base64
import datetime
import html
import math
from collections.abc import Callable

import numpy as np

from .._version import __version__
from ..analysis.features import CYTOPLASM_RADII, FEATURE_GROUPS, RADIAL_BINS
from ..data.units import length_key
from ..evaluation.types import (
    ChannelSummary,
    Disagreement,
    Evaluation,
    ImageRow,
    NucleiRulers,
    ObjectSummary,
    ToleranceCurve,
    Verdict,
)
from . import figures
from .rulers import DESCRIPTIONS, RulerScores, ruler_scores, signed_percent

_ICONS = {"good": "✔", "caution": "⚠", "poor": "✘", "undefined": "–"}
_MAX_ROWS = 300
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1250px;margin:24px auto;padding:0 16px;
color:#222;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9em} ul.verdicts{list-style:none;padding-left:0} ul.verdicts li{margin:.35em 0;
padding:.4em .6em;border-radius:4px} .good{background:#e8f5e9} .caution{background:#fff8e1} .poor{background:#fdecea}
.undefined{background:#f1f1f1} table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{border:1px solid #ddd;
padding:3px 7px;text-align:right} th{background:#f6f6f6} td:first-child,th:first-child{text-align:left}
img{max-width:100%;margin:4px 0} .figs{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.note{color:#555;font-size:.85em}
"""
_Value = float | int | None  # a summary-table cell; None: the channel has no such value


def _objects(value_of: Callable[[ObjectSummary], float | int]) -> Callable[[ChannelSummary], _Value]:
    """A channel's object readout value; None where it has no object readout."""
    return lambda s: value_of(s.objects) if s.objects is not None else None


def _curve(value_of: Callable[[ToleranceCurve], float]) -> Callable[[ChannelSummary], _Value]:
    """A value of a channel's tolerance curve; NaN (shown "not defined") where every target is constant."""
    return lambda s: value_of(s.tolerance_curve) if s.tolerance_curve is not None else math.nan


#: Rows of the summary table: label, the value of a channel (None: the row shows an empty cell, or is
#: left out where no channel has it), and how to show it ("" as is, "percent" × 100 with %, "length"
#: with the unit in the label).
_SUMMARY_FIELDS: list[tuple[str, Callable[[ChannelSummary], _Value], str]] = [
    ("Pearson r (median)", lambda s: s.pearson_r_median, ""),
    ("accuracy score P (FRM)", lambda s: s.accuracy_score_p, ""),
    ("segmentation-PCC (mean)", lambda s: s.segmentation_pcc_mean, ""),
    ("SSIM (mean)", lambda s: s.ssim_mean, ""),
    ("PSNR dB (mean)", lambda s: s.psnr_mean, ""),
    ("NRMSE (mean)", lambda s: s.nrmse_mean, ""),
    ("tolerance level TL (VirFluoNet; min of IE + SE)", _curve(lambda c: c.tolerance_level), ""),
    ("TL's tolerance (of the target's range)", _curve(lambda c: c.best_threshold), "percent"),
    ("area with |error| > 50/255 of range (mean)", lambda s: s.error_area_fraction_mean, "percent"),
    ("baseline: input vs target r", lambda s: s.baseline_pearson_r_mean, ""),
    ("baseline: input vs target SSIM", lambda s: s.baseline_ssim_mean, ""),
    ("objects in real stain", _objects(lambda o: o.count_target_total), ""),
    ("objects in virtual stain", _objects(lambda o: o.count_prediction_total), ""),
    ("count error", _objects(lambda o: o.count_error_total), "percent"),
    ("F1 at IoU 0.5 (mean)", _objects(lambda o: o.f1_mean), ""),
    ("centroid displacement (median)", _objects(lambda o: o.displacement_median), "length"),
    ("area ratio virtual/real (median)", _objects(lambda o: o.area_ratio_median), ""),
]
_CELLS_METHOD = ("FRM's junction recipe: threshold, skeletonise, close, invert, label; cells touching the border are "
                 "left out")


def _row_columns(pixel_size_um: float | None) -> list[str]:
    """The ``metrics.csv`` columns shown in the per-image table."""
    return ["image", "channel", "pearson_r", "ssim", "psnr", "nrmse", "mae", "tolerance_level", "error_area_fraction",
            "baseline_pearson_r", "count_target",
            "count_prediction", "count_error", "f1", length_key("displacement_median", pixel_size_um), "note"]


def _fmt(value: object) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return "not defined" if not math.isfinite(value) else f"{value:.4g}"
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _verdict_list(name: str, items: list[Verdict]) -> str:
    lis = "".join(f'<li class="{v.status}">{_ICONS[v.status]} <b>{html.escape(v.readout)}</b>: '
                  f'{html.escape(v.text)}</li>' for v in items)
    return f"<h3>{html.escape(name)}</h3><ul class=\"verdicts\">{lis}</ul>"


def _cell(value: _Value, how: str) -> str:
    if how == "percent" and isinstance(value, float) and math.isfinite(value):
        return _fmt(value * 100) + " %"
    return _fmt(value)


def _summary_table(channels: dict[str, ChannelSummary], unit: str) -> str:
    head = "".join(f"<th>{html.escape(n)}</th>" for n in channels)
    body = ""
    for label, value_of, how in _SUMMARY_FIELDS:
        values = [value_of(s) for s in channels.values()]
        if all(v is None for v in values):
            continue
        cells = "".join(f"<td>{_cell(v, how)}</td>" for v in values)
        label = label + f" ({unit})" if how == "length" else label
        body += f"<tr><td>{html.escape(label)}</td>{cells}</tr>"
    return f"<table><tr><th>metric</th>{head}</tr>{body}</table>"


def _feature_table(objects: ObjectSummary, noun: str) -> str:
    """Per feature, grouped: r over all matched objects (pooled) and the median of the per-image r."""
    pooled, median = objects.feature_pearson_r, objects.feature_pearson_r_image_median
    if not pooled:
        return ""
    body = ""
    for group, names in FEATURE_GROUPS:
        for name in names:
            n = sum(np.isfinite(v) for v in objects.feature_pearson_r_per_image.get(name, []))
            body += (f"<tr><td>{html.escape(name)}</td><td>{html.escape(group)}</td><td>{_fmt(pooled.get(name))}</td>"
                     f"<td>{_fmt(median.get(name))}</td><td>{n}</td></tr>")
    return (f"<p>Per-object features, real vs virtual (VirFluoNet's CellProfiler comparison): Pearson r over the "
            f"{objects.matched} matched {noun} of all images (pooled), and within each image over its own matched "
            f"{noun} (median over the images where it is defined). Each object is measured on its own image; the "
            f"cytoplasm is a ring {CYTOPLASM_RADII:g} median object radii wide around each object; granularity is the "
            "share of the object's signal removed by an opening by reconstruction at each disc radius; radial "
            f"fractions share the signal among {RADIAL_BINS} rings from the centre to the edge.</p>"
            "<table><tr><th>feature</th><th>group</th><th>r pooled</th><th>r per image (median)</th>"
            f"<th>images</th></tr>{body}</table>")


def _rows_table(rows: list[ImageRow], pixel_size_um: float | None) -> str:
    """The first rows as in ``metrics.csv`` (a subset of its columns)."""
    columns = _row_columns(pixel_size_um)
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(cells.get(c, ''))}</td>" for c in columns) + "</tr>"
                   for cells in (r.csv_row(pixel_size_um) for r in rows[:_MAX_ROWS]))
    more = f'<p class="note">{len(rows) - _MAX_ROWS} more rows in metrics.csv.</p>' if len(rows) > _MAX_ROWS else ""
    return f'<div style="overflow-x:auto"><table><tr>{head}</tr>{body}</table></div>{more}'


def _method_text(kind: str, rows: list[ImageRow], rulers: NucleiRulers) -> str:
    """How the objects were segmented and, with a second nuclei segmenter, how well the two agree and on which
    image least (the ruler's accuracy on reference data: :func:`_ruler_section`)."""
    if kind != "nuclei":
        return _CELLS_METHOD
    text = DESCRIPTIONS.get(rulers.judge, rulers.judge) + "; the same bias applies to both images"
    agreement = [(r.objects.segmenter_agreement_f1, r.image) for r in rows
                 if r.objects is not None and np.isfinite(r.objects.segmenter_agreement_f1)]
    if not agreement:
        return text
    lowest = min(agreement)
    return (f"{text}; its agreement with the {rulers.other} method on the real stain is F1 "
            f"{np.mean([a for a, _ in agreement]):.2f} on average (column segmenter_agreement_f1), lowest "
            f"{lowest[0]:.2f} on {html.escape(lowest[1])}; see <i>The judge judged</i>")


def _scores_table(rulers: list[RulerScores]) -> str:
    """Reference set × segmenter: F1 at IoU 0.5, pooled and mean absolute count error (segmenters with scores)."""
    scored = [{s.reference_set: s for s in r.scores} for r in rulers if r.scores]
    if not scored:
        return ""
    head = "".join(f"<th>{html.escape(r.method)}: F1 at IoU 0.5</th><th>count error (pooled)</th>"
                   "<th>|count error| (mean)</th>" for r in rulers if r.scores)
    body = ""
    for name in dict.fromkeys(n for by_set in scored for n in by_set):
        cells = "".join(f"<td>{_fmt(s.f1)}</td><td>{signed_percent(s.pooled_count_error)}</td>"
                        f"<td>{_cell(s.mean_abs_count_error, 'percent')}</td>" if s else "<td></td>" * 3
                        for s in (by_set.get(name) for by_set in scored))
        body += f"<tr><td>{html.escape(name)}</td>{cells}</tr>"
    return f"<table><tr><th>reference set (held out)</th>{head}</tr>{body}</table>"


def _disagreement_table(disagreements: list[Disagreement], rulers: NucleiRulers) -> str:
    """Per image and nuclei channel: objects of each segmenter, matched, found by one only, F1."""
    j, o = html.escape(rulers.judge), html.escape(str(rulers.other))
    head = (f"<tr><th>image</th><th>channel</th><th>{j}</th><th>{o}</th><th>matched</th><th>only {j}</th>"
            f"<th>only {o}</th><th>F1</th></tr>")
    body = "".join(f"<tr><td>{html.escape(d.image)}</td><td>{html.escape(d.channel)}</td><td>{d.n_judge}</td>"
                   f"<td>{d.n_other}</td><td>{d.matched}</td><td>{d.only_judge}</td><td>{d.only_other}</td>"
                   f"<td>{_fmt(d.f1)}</td></tr>" for d in disagreements[:_MAX_ROWS])
    more = (f'<p class="note">{len(disagreements) - _MAX_ROWS} more images: column segmenter_agreement_f1 of '
            "metrics.csv.</p>" if len(disagreements) > _MAX_ROWS else "")
    return f'<div style="overflow-x:auto"><table>{head}{body}</table></div>{more}'


def _ruler_section(evaluation: Evaluation) -> list[str]:
    """The judge judged: the nuclei segmenters' recorded accuracy on reference data, then, per image, where the
    judging and the other segmenter disagree on the real stain (counts, and panels where they agree least)."""
    rulers = evaluation.rulers
    scores = [ruler_scores(m) for m in (rulers.judge, rulers.other) if m is not None]
    parts = ["<h2>The judge judged: the nuclei segmenter</h2>"]
    parts += [f"<p><b>{role}:</b> {html.escape(s.statement())}</p>"
              for role, s in zip(("Judging segmenter", "Compared with"), scores)]
    parts.append(_scores_table(scores))
    if not evaluation.disagreements:
        parts.append('<p class="note">No second segmenter ran here; <code>virtualstain evaluate</code> compares the '
                     "classical and the learned segmenter on every real nuclear stain.</p>")
        return parts
    shown = sorted((d for d in evaluation.disagreements if d.comparison is not None), key=lambda d: d.agreement)
    parts += [f"<p>Where {html.escape(rulers.judge)} and {html.escape(str(rulers.other))} disagree on the real stain: "
              "objects of one without a partner of IoU ≥ 0.5 in the other (virtualstain.analysis.match_objects). "
              f"The panels show the {len(shown)} image(s) where they agree least.</p>",
              _disagreement_table(evaluation.disagreements, rulers), '<div class="figs">']
    parts += [_img(figures.disagreement_figure(d, rulers), f"segmenter disagreement {d.image} {d.channel}")
              for d in shown]
    return parts + ["</div>"]


def _tolerance_section(evaluation: Evaluation) -> list[str]:
    """VirFluoNet's tolerance curves, one figure per channel with a defined curve (none: no section)."""
    figs = [_img(figures.tolerance_figure(s.tolerance_curve, evaluation.pools[name].tolerance, name),
                 f"tolerance curve {name}") for name, s in evaluation.channels.items() if s.tolerance_curve is not None]
    if not figs:
        return []
    return ["<h2>Tolerance (VirFluoNet)</h2>", '<div class="figs">', *figs, "</div>",
            '<p class="note">On D = |virtual − real| with B = the target\'s range, for thresholds t = 0 … 99 % of B: the '
            "intensity error IE(t) is the mean D of the pixels with D ≤ t, divided by B; the spatial error SE(t) is the "
            "area fraction with D > t (the thresholded error map; green in the image panels at t = 50/255 of B, "
            "dotted here). The tolerance level TL is the minimum of IE + SE over t (mean curve over the images; "
            "each image's IE + SE in grey). While no error exceeds B that minimum is where every error is tolerated, "
            "so TL = MAE / B and its threshold is the largest error; the curve shows how the errors are "
            "distributed (virtualstain.metrics.tolerance).</p>"]


def _uncertainty_section(evaluation: Evaluation) -> list[str]:
    """The calibrated σ: reliability diagram per channel and σ beside |error| (none: no section)."""
    u = evaluation.uncertainty
    if u is None:
        return []
    judged = {n: c for n, c in u.channels.items() if c.reliability_sigma}
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{c.factor:.3g}</td><td>{_fmt(c.coverage_1sigma)}</td>"
                   f"<td>{_fmt(c.coverage_2sigma)}</td><td>{_fmt(c.tile_spearman)}</td></tr>" for n, c in u.channels.items())
    return ["<h2>Uncertainty</h2>",
            "<table><tr><th>channel</th><th>factor</th><th>within 1σ (0.683)</th><th>within 2σ (0.954)</th>"
            f"<th>Spearman σ vs |error|, 32² tiles</th></tr>{rows}</table>", '<div class="figs">',
            *[_img(figures.reliability_figure(c, n), f"reliability {n}") for n, c in judged.items()],
            *[_img(figures.sigma_figure(p), f"sigma {p.image} {p.channel}") for p in evaluation.sigma_panels], "</div>",
            f'<p class="note">σ = the standard deviation of the 8 flipped/rotated predictions (method {u.method}) times '
            f"a factor per channel, fitted on {html.escape(u.calibrated_on)} so that 68 % of their errors lie within "
            f"1σ; judged here on {html.escape(u.judged_on)}, which set neither the weights nor the factor "
            "(virtualstain.metrics.uncertainty). predict --uncertainty writes this σ.</p>"]


def render_report(evaluation: Evaluation, title: str = "virtualstain evaluation") -> str:
    """HTML text of the report for an :class:`~virtualstain.evaluation.types.Evaluation`."""
    channels, unit = evaluation.channels, evaluation.length_unit
    px = f"{evaluation.pixel_size_um} µm/px" if evaluation.pixel_size_um else "unknown pixel size (lengths in px)"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">{evaluation.n_images} image(s), {px}; virtualstain {__version__}, '
             f'{datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}</p>', "<h2>Verdicts</h2>"]
    parts += [_verdict_list(name, s.verdicts) for name, s in channels.items()]
    undefined = [u for s in channels.values() for u in s.undefined]
    if undefined:
        parts.append('<p class="note">Not defined: ' + "; ".join(html.escape(u) for u in undefined) + "</p>")
    parts += ["<h2>Summary</h2>", _summary_table(channels, unit), "<h2>Agreement per image</h2>",
              '<div class="figs">', _img(figures.violin_figure(evaluation.rows), "violin plot of Pearson r")]
    for name, pool in evaluation.pools.items():
        parts.append(_img(figures.joint_histogram_figure(pool.pairs, name), f"joint histogram {name}"))
    parts.append("</div>")
    parts += _tolerance_section(evaluation)
    parts += _uncertainty_section(evaluation)
    for name, pool in evaluation.pools.items():
        objects = channels[name].objects
        if objects is None:  # no object readout
            continue
        noun = "nuclei" if pool.kind == "nuclei" else "cells"
        mine = [r for r in evaluation.rows if r.channel == name]
        parts += [f"<h2>Objects: {html.escape(name)} ({noun})</h2>", '<div class="figs">',
                  _img(figures.count_scatter_figure(mine, name, noun), f"count scatter {name}"),
                  _img(figures.distributions_figure(pool, noun, unit), f"areas and displacements {name}"), "</div>",
                  _feature_table(objects, noun),
                  f'<p class="note">{noun.capitalize()} are segmented the same way in the real and the virtual stain '
                  f"({_method_text(pool.kind, mine, evaluation.rulers)}), then matched one to one at IoU ≥ 0.5; "
                  "outlines are drawn in "
                  "yellow below.</p>"]
    if any(pool.kind == "nuclei" for pool in evaluation.pools.values()):
        parts += _ruler_section(evaluation)
    parts.append("<h2>Images</h2>")
    parts += [_img(figures.panel_figure(p, unit), f"panels {p.image} {p.channel}") for p in evaluation.panels]
    parts += ["<h2>Every image</h2>", _rows_table(evaluation.rows, evaluation.pixel_size_um),
              '<p class="note">Pearson r over all pixels; SSIM and PSNR use the target\'s range (max − min) as data '
              "range; NRMSE = RMSE / that range; accuracy score P = mean r over images whose target has ≥ 1 % of pixels "
              "above the pooled Otsu threshold (FRM); baseline = the label-free input channel that correlates best, "
              "rescaled to the target by least squares. Volumes are read out on their Z maximum projection.</p>"]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")
