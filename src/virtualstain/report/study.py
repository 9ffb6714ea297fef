"""HTML page of a training-size / epoch study: the table and, per channel, r, P, count error and wall time."""

from __future__ import annotations

import html
import math

import matplotlib.pyplot as plt
import numpy as np

from ..evaluation.study import StudyRow
from .figures import _png
from .html import _CSS, _fmt, _img

_TABLE = ["fraction", "train_regions", "train_megapixels", "epochs", "channel", "pearson_r", "accuracy_score_p",
          "count_error", "f1", "train_seconds"]


def _number(value: float | None) -> float:
    """NaN for None (a channel without an object readout), else the value as a float."""
    return math.nan if value is None else float(value)


def study_figure(rows: list[StudyRow], channel: str) -> bytes:
    """Four panels: r and P vs training size, count error vs training size, r vs epochs, wall time."""
    mine = [r for r in rows if r.channel == channel]
    fractions = sorted({r.fraction for r in mine})
    epochs = sorted({r.epochs_requested for r in mine})
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.0))
    colours = plt.cm.viridis(np.linspace(0, 0.85, max(len(epochs), len(fractions))))
    for k, e in enumerate(epochs):
        sel = sorted((r for r in mine if r.epochs_requested == e), key=lambda r: r.fraction)
        size = [r.train_megapixels for r in sel]
        axes[0].plot(size, [r.pearson_r for r in sel], "o-", color=colours[k], label=f"r, {e} epochs")
        axes[0].plot(size, [r.accuracy_score_p for r in sel], "s--", color=colours[k], alpha=0.6,
                     label=f"P, {e} epochs")
        axes[1].plot(size, [100 * _number(r.count_error) for r in sel], "o-", color=colours[k], label=f"{e} epochs")
        axes[3].plot(size, [r.train_seconds for r in sel], "o-", color=colours[k], label=f"{e} epochs")
    for k, f in enumerate(fractions):
        sel = sorted((r for r in mine if r.fraction == f), key=lambda r: r.epochs)
        axes[2].plot([r.epochs for r in sel], [r.pearson_r for r in sel], "o-", color=colours[k],
                     label=f"{f:g} of training data")
    axes[1].axhspan(-5, 5, color="#cccccc", alpha=0.5)
    labels = [("training pixels (Mpx)", "Pearson r / accuracy P"), ("training pixels (Mpx)", "count error (%)"),
              ("epochs trained", "Pearson r"), ("training pixels (Mpx)", "training wall time (s)")]
    for ax, (xl, yl) in zip(axes, labels):
        ax.set_xlabel(xl, fontsize=8)
        ax.set_ylabel(yl, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6)
    fig.suptitle(channel, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _table_row(row: StudyRow) -> str:
    cells = row.csv_row()
    return "<tr>" + "".join(f"<td>{_fmt(cells[c] if c == 'channel' else _number(cells[c]))}</td>" for c in _TABLE) + "</tr>"


def render_study(rows: list[StudyRow], split: str) -> str:
    """HTML text of the study page (self-contained, like the evaluation report)."""
    channels = list(dict.fromkeys(r.channel for r in rows))
    head = "".join(f"<th>{c}</th>" for c in _TABLE)
    body = "".join(_table_row(r) for r in rows)
    parts = ["<h1>Training-size and epoch study</h1>",
             f'<p class="meta">Every run is tested on the same held-out regions: {html.escape(split)}.</p>',
             *[_img(study_figure(rows, c), f"study plots {c}") for c in channels],
             f"<h2>All runs</h2><table><tr>{head}</tr>{body}</table>",
             '<p class="note">r = mean Pearson r over the test images; P = FRM accuracy score; count error = (virtual − '
             "real) / real nuclei or cells over all test images; wall time = training time of the run up to that "
             "epoch count.</p>"]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>virtualstain study</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
