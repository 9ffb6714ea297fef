"""A self-contained HTML report of an evaluation: images embedded as base64 PNG, no scripts, opens offline."""

from __future__ import annotations

import base64
import datetime
import html
import math
from collections.abc import Callable

import numpy as np

from .._version import __version__
from ..data.units import length_key
from ..evaluation.types import ChannelSummary, Evaluation, ImageRow, ObjectSummary, Verdict
from . import figures

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
    ("baseline: input vs target r", lambda s: s.baseline_pearson_r_mean, ""),
    ("baseline: input vs target SSIM", lambda s: s.baseline_ssim_mean, ""),
    ("objects in real stain", _objects(lambda o: o.count_target_total), ""),
    ("objects in virtual stain", _objects(lambda o: o.count_prediction_total), ""),
    ("count error", _objects(lambda o: o.count_error_total), "percent"),
    ("F1 at IoU 0.5 (mean)", _objects(lambda o: o.f1_mean), ""),
    ("centroid displacement (median)", _objects(lambda o: o.displacement_median), "length"),
    ("area ratio virtual/real (median)", _objects(lambda o: o.area_ratio_median), ""),
]
_METHOD = {
    "nuclei": "the classical method: threshold and distance-transform watershed; on BBBC039's manual labels it scores "
              "F1 0.86 at IoU 0.5 and counts 12 % low; the same bias applies to both images",
    "nuclei_learned": "the learned segmenter shipped with virtualstain, sized to each image's nuclei; on held-out "
                      "manual labels it scores F1 0.90 at IoU 0.5 on BBBC039, 0.90 on DSB2018, 0.96 on another "
                      "microscope's Hoechst and 0.86 on simulated HL60 nuclei (which it over-counts by 17 %)",
    "cells": "FRM's junction recipe: threshold, skeletonise, close, invert, label; cells touching the border are left out",
}


def _row_columns(pixel_size_um: float | None) -> list[str]:
    """The ``metrics.csv`` columns shown in the per-image table."""
    return ["image", "channel", "pearson_r", "ssim", "psnr", "nrmse", "mae", "baseline_pearson_r", "count_target",
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
    r = objects.feature_pearson_r
    if not r:
        return ""
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in r.items())
    return (f"<p>Per-object features, real vs virtual: Pearson r over the {objects.matched} matched {noun} "
            f"(each measured on its own image; VirFluoNet's CellProfiler comparison).</p>"
            f"<table><tr><th>feature</th><th>r</th></tr>{cells}</table>")


def _rows_table(rows: list[ImageRow], pixel_size_um: float | None) -> str:
    """The first rows as in ``metrics.csv`` (a subset of its columns)."""
    columns = _row_columns(pixel_size_um)
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(cells.get(c, ''))}</td>" for c in columns) + "</tr>"
                   for cells in (r.csv_row(pixel_size_um) for r in rows[:_MAX_ROWS]))
    more = f'<p class="note">{len(rows) - _MAX_ROWS} more rows in metrics.csv.</p>' if len(rows) > _MAX_ROWS else ""
    return f'<div style="overflow-x:auto"><table><tr>{head}</tr>{body}</table></div>{more}'


def _method_text(kind: str, rows: list[ImageRow]) -> str:
    """How the objects were segmented, what that ruler scores on reference data, and, with the learned
    segmenter, on which images it disagrees with the classical method."""
    agreement = [(r.objects.segmenter_agreement_f1, r.image) for r in rows
                 if r.objects is not None and np.isfinite(r.objects.segmenter_agreement_f1)]
    if kind != "nuclei" or not agreement:
        return _METHOD[kind]
    lowest = min(agreement)
    return (f"{_METHOD['nuclei_learned']}; its agreement with the classical method on the real stain is F1 "
            f"{np.mean([a for a, _ in agreement]):.2f} on average (column segmenter_agreement_f1), lowest "
            f"{lowest[0]:.2f} on {html.escape(lowest[1])}")


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
                  f"({_method_text(pool.kind, mine)}), then matched one to one at IoU ≥ 0.5; outlines are drawn in "
                  "yellow below.</p>"]
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
