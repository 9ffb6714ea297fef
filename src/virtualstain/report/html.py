"""A self-contained HTML report of an evaluation: images embedded as base64 PNG, no scripts, opens offline."""

from __future__ import annotations

import base64
import datetime
import html
import math

from .. import __version__
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
_SUMMARY_FIELDS = [
    ("pearson_r_median", "Pearson r (median)"), ("accuracy_score_p", "accuracy score P (FRM)"),
    ("segmentation_pcc_mean", "segmentation-PCC (mean)"), ("ssim_mean", "SSIM (mean)"), ("psnr_mean", "PSNR dB (mean)"),
    ("nrmse_mean", "NRMSE (mean)"), ("baseline_pearson_r_mean", "baseline: input vs target r"),
    ("baseline_ssim_mean", "baseline: input vs target SSIM"), ("count_target_total", "objects in real stain"),
    ("count_prediction_total", "objects in virtual stain"), ("count_error_total", "count error"),
    ("f1_mean", "F1 at IoU 0.5 (mean)"), ("displacement_median_um", "centroid displacement (median)"),
    ("area_ratio_median", "area ratio virtual/real (median)"),
]
_METHOD = {
    "nuclei": "threshold and distance-transform watershed; on BBBC039's manual labels it scores F1 0.86 at IoU 0.5 "
              "and counts 10 % low; the same bias applies to both images",
    "cells": "FRM's junction recipe: threshold, skeletonise, close, invert, label; cells touching the border are left out",
}
_ROW_FIELDS = ["pearson_r", "ssim", "psnr", "nrmse", "mae", "baseline_pearson_r", "count_target", "count_prediction",
               "count_error", "f1", "displacement_median_um", "note"]


def _fmt(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return "not defined" if not math.isfinite(value) else f"{value:.4g}"
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _verdict_list(name: str, items: list[dict]) -> str:
    lis = "".join(f'<li class="{v["status"]}">{_ICONS[v["status"]]} <b>{html.escape(v["readout"])}</b>: '
                  f'{html.escape(v["text"])}</li>' for v in items)
    return f"<h3>{html.escape(name)}</h3><ul class=\"verdicts\">{lis}</ul>"


def _summary_table(channels: dict, unit: str) -> str:
    names = list(channels)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = ""
    for key, label in _SUMMARY_FIELDS:
        if not any(key in channels[n] for n in names):
            continue
        cells = ""
        for n in names:
            v = channels[n].get(key, "")
            percent = key == "count_error_total" and isinstance(v, float) and math.isfinite(v)
            cells += f"<td>{_fmt(v * 100) + ' %' if percent else _fmt(v)}</td>"
        label = label + f" ({unit})" if key == "displacement_median_um" else label
        body += f"<tr><td>{html.escape(label)}</td>{cells}</tr>"
    return f"<table><tr><th>metric</th>{head}</tr>{body}</table>"


def _feature_table(entry: dict, noun: str) -> str:
    r = entry.get("feature_pearson_r") or {}
    if not r:
        return ""
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in r.items())
    return (f"<p>Per-object features, real vs virtual: Pearson r over the {entry['matched']} matched {noun} "
            f"(each measured on its own image; VirFluoNet's CellProfiler comparison).</p>"
            f"<table><tr><th>feature</th><th>r</th></tr>{cells}</table>")


def _rows_table(rows: list[dict]) -> str:
    shown = rows[:_MAX_ROWS]
    head = "".join(f"<th>{c}</th>" for c in ["image", "channel", *_ROW_FIELDS])
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in ["image", "channel", *_ROW_FIELDS])
                   + "</tr>" for r in shown)
    more = f'<p class="note">{len(rows) - _MAX_ROWS} more rows in metrics.csv.</p>' if len(rows) > _MAX_ROWS else ""
    return f'<div style="overflow-x:auto"><table><tr>{head}</tr>{body}</table></div>{more}'


def render_report(evaluation, title: str = "virtualstain evaluation") -> str:
    """HTML text of the report for an :class:`~virtualstain.workflows.evaluate.Evaluation`."""
    s = evaluation.summary
    unit = s["length_unit"]
    px = f"{s['pixel_size_um']} µm/px" if s["pixel_size_um"] else "unknown pixel size (lengths in px)"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">{s["n_images"]} image(s), {px}; virtualstain {__version__}, '
             f'{datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}</p>', "<h2>Verdicts</h2>"]
    parts += [_verdict_list(name, entry["verdicts"]) for name, entry in s["channels"].items()]
    undefined = [u for entry in s["channels"].values() for u in entry["undefined"]]
    if undefined:
        parts.append('<p class="note">Not defined: ' + "; ".join(html.escape(u) for u in undefined) + "</p>")
    parts += ["<h2>Summary</h2>", _summary_table(s["channels"], unit), "<h2>Agreement per image</h2>",
              '<div class="figs">', _img(figures.violin_figure(evaluation.rows), "violin plot of Pearson r")]
    for name, pool in evaluation.pools.items():
        parts.append(_img(figures.joint_histogram_figure(pool.pairs, name), f"joint histogram {name}"))
    parts.append("</div>")
    for name, pool in evaluation.pools.items():
        if pool.kind == "none":
            continue
        noun = "nuclei" if pool.kind == "nuclei" else "cells"
        mine = [r for r in evaluation.rows if r["channel"] == name]
        parts += [f"<h2>Objects: {html.escape(name)} ({noun})</h2>", '<div class="figs">',
                  _img(figures.count_scatter_figure(mine, name, noun), f"count scatter {name}"),
                  _img(figures.distributions_figure(pool, noun, unit), f"areas and displacements {name}"), "</div>",
                  _feature_table(s["channels"][name], noun),
                  f'<p class="note">{noun.capitalize()} are segmented the same way in the real and the virtual stain '
                  f"({_METHOD[pool.kind]}), then matched one to one at IoU ≥ 0.5; outlines are drawn in yellow "
                  "below.</p>"]
    parts.append("<h2>Images</h2>")
    parts += [_img(figures.panel_figure(p, unit), f"panels {p.image} {p.channel}") for p in evaluation.panels]
    parts += ["<h2>Every image</h2>", _rows_table(evaluation.rows),
              '<p class="note">Pearson r over all pixels; SSIM and PSNR use the target\'s range (max − min) as data '
              "range; NRMSE = RMSE / that range; accuracy score P = mean r over images whose target has ≥ 1 % of pixels "
              "above the pooled Otsu threshold (FRM); baseline = the label-free input channel that correlates best, "
              "rescaled to the target by least squares. Volumes are read out on their Z maximum projection.</p>"]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")
