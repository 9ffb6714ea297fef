"""``virtualstain study``: how accuracy grows with training data and epochs (FRM Figs. 5–6).

The split is planned once, so every run is tested on the same held-out regions. For each training
fraction f a model is trained from scratch on a share f of the training data — whole training fields
(a seeded choice) when there are four or more, otherwise the first f of each training region along its
longest lateral axis, never less than one patch. Each fraction's run then continues through the listed
epoch counts: the run is resumed with a larger ``max_epochs`` (early stopping off), which gives exactly
the model that training for that many epochs from scratch gives, at the cost of the longest run only.
After each step the held-out test regions are judged from memory (:mod:`~virtualstain.workflows.stain.held_out`).

Outputs in ``OUT``: one run folder per fraction (``fraction_0.25/`` ...), ``study.csv`` (one row per
fraction, epoch count and channel), ``study.json`` and ``study.html`` (tables and plots). Rerunning the
same command skips finished steps and resumes an interrupted one.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..._atomic import ensure_writable_dir, write_csv_atomic, write_text_atomic
from ...data.samples import Sample, read_manifest
from ...data.splits import Region, SplitPlan, plan_splits
from ...errors import UserError
from ...evaluation.study import STUDY_COLUMNS, StudyRow
from ...report.study import render_study
from ...training.config import TrainConfig
from .held_out import predict_held_out, score_held_out
from .train import train


def _crop(region: Region, fraction: float, min_length: int) -> Region:
    shape = region.shape
    lateral = [len(shape) - 1, len(shape) - 2]
    axis = max(lateral, key=lambda a: shape[a])
    a, b = region.bounds[axis]
    length = max(int(round(fraction * (b - a))), min(b - a, min_length))
    bounds = list(region.bounds)
    bounds[axis] = (a, a + length)
    return Region(region.sample, region.split, tuple(bounds))


def training_subset(plan: SplitPlan, fraction: float, seed: int = 0, min_length: int = 64) -> list[Region]:
    """The training regions for a fraction of the training data (see the module docstring)."""
    if not 0 < fraction <= 1:
        raise UserError(f"training fractions must lie in (0, 1], got {fraction}")
    train_regions = plan.of("train")
    if len(train_regions) >= 4:
        n = max(1, int(round(fraction * len(train_regions))))
        order = np.random.default_rng(seed).permutation(len(train_regions))
        return [train_regions[k] for k in sorted(order[:n])]
    return [_crop(r, fraction, min_length) for r in train_regions]


def region_samples(samples: list[Sample], regions: Sequence[Region]) -> list[Sample]:
    """One sample per region (the region's crop of input and target — the target at the sample's scale —
    ``split`` set), named ``<sample>_<split>[_k]``."""
    out = []
    for k, r in enumerate(regions):
        s = samples[r.sample]
        name = f"{s.name}_{r.split}"
        if sum(1 for q in regions if q.sample == r.sample and q.split == r.split) > 1:
            name = f"{name}_{k}"
        x, y = r.crop(s)
        out.append(dataclasses.replace(s, name=name, input=x, target=y, split=r.split, group=name))
    return out


def _parse_list(values: Sequence[float | str], what: str, kind: type) -> list:
    try:
        out = sorted({kind(v) for v in values})
    except (TypeError, ValueError):
        raise UserError(f"{what}: give numbers, e.g. {'0.25,0.5,1' if kind is float else '2,5,10'}") from None
    if not out:
        raise UserError(f"{what}: give at least one value")
    return out


def _read_done(path: Path) -> list[StudyRow]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [StudyRow.from_csv(cells) for cells in csv.DictReader(fh)]


def _write_table(path: Path, rows: list[StudyRow]) -> None:
    write_csv_atomic(path, [r.csv_row() for r in rows], STUDY_COLUMNS)


def run_study(data: str | os.PathLike | list[Sample], out: str | os.PathLike, config: TrainConfig | None = None, *,
              fractions: Sequence[float | str] = (0.25, 0.5, 1.0), epochs: Sequence[int | str] = (2, 5, 10),
              minutes_per_fraction: float | None = None,
              log: Callable[[str], None] | None = None) -> list[StudyRow]:
    """Train from scratch on growing training fractions and epoch counts; tabulate and plot the test readouts.

    Parameters
    ----------
    data : path or list of Sample
        A manifest or in-memory samples, as for :func:`~virtualstain.workflows.stain.train.train`.
    out : path
        Study folder (see the module docstring).
    fractions : sequence of float
        Shares of the training data, in (0, 1] (numbers, or their text as typed on the command line).
    epochs : sequence of int
        Epoch counts at which each fraction's run is judged (numbers or text).
    minutes_per_fraction : float, optional
        Wall-clock budget of each fraction's run, over all its epoch steps (a step that hits it reports the
        epochs actually trained).
    log : callable, optional
        Receives one line per finished step.

    Returns
    -------
    list of StudyRow
        The rows of ``study.csv`` (columns :data:`~virtualstain.evaluation.study.STUDY_COLUMNS`).
    """
    config = (config or TrainConfig()).model_copy(deep=True)
    fractions = _parse_list(fractions, "--fractions", float)
    epochs = _parse_list(epochs, "--epochs", int)
    if epochs[0] < 1:
        raise UserError(f"--epochs: epoch counts must be ≥ 1, got {epochs[0]}")
    dims = config.model.spatial_dims
    samples = read_manifest(Path(data), dims, config.data.input_channels) if isinstance(data, (str, os.PathLike)) \
        else list(data)
    plan = plan_splits(samples, config.split.val_fraction, config.split.test_fraction, config.training.seed)
    folder = ensure_writable_dir(out)  # only once the data loaded: bad input leaves no empty study folder
    patch = config.patch_size()
    min_length = max(patch[-2:])
    config.training.early_stopping_patience = None
    if minutes_per_fraction is not None and not (minutes_per_fraction > 0 and math.isfinite(minutes_per_fraction)):
        raise UserError(f"--minutes-per-fraction {minutes_per_fraction}: give a positive number of minutes")
    config.training.max_minutes = minutes_per_fraction
    table = folder / "study.csv"
    rows = [r for r in _read_done(table) if r.fraction in fractions and r.epochs_requested in epochs]
    done = {(r.fraction, r.epochs_requested) for r in rows}
    for fraction in fractions:
        subset = training_subset(plan, fraction, config.training.seed, min_length)
        regions = subset + plan.of("val") + plan.of("test")
        run_samples = region_samples(samples, regions)
        megapixels = sum(int(np.prod(r.shape)) for r in subset) / 1e6
        run = folder / f"fraction_{fraction:g}"
        seconds = max([r.train_seconds for r in rows if r.fraction == fraction], default=0.0)
        for n_epochs in epochs:
            if (fraction, n_epochs) in done:
                continue
            config.training.max_epochs = n_epochs
            result = train(run_samples, run, config)
            if result.finished_before and result.bundle is not None:  # stopped after training, before its row
                result.test = score_held_out(predict_held_out(result.bundle, run_samples, plan_splits(
                    run_samples, config.split.val_fraction, config.split.test_fraction, config.training.seed)),
                    result.bundle)
            if result.summary is None or result.test is None:
                raise UserError(f"{run}: the run has no test regions to judge; give the study data with test rows "
                                "or a split.test_fraction above 0")
            seconds += result.summary.seconds_this_session
            judged = result.test.channels
            rows += [StudyRow(fraction=fraction, train_regions=len(subset), train_megapixels=round(megapixels, 4),
                              epochs_requested=n_epochs, epochs=result.summary.epochs, channel=channel,
                              pearson_r=s.pearson_r_mean, accuracy_score_p=s.accuracy_score_p,
                              count_error=s.objects.count_error_total if s.objects else None,
                              f1=s.objects.f1_mean if s.objects else None,  # None: no object readout
                              train_seconds=round(seconds, 1), run=str(run.relative_to(folder)))
                     for channel, s in judged.items()]
            rows.sort(key=lambda r: (r.fraction, r.epochs_requested, r.channel))
            _write_table(table, rows)
            if log:
                log(f"fraction {fraction:g}, {result.summary.epochs} epochs: " + ", ".join(
                    f"{c} r={s.pearson_r_mean:.3f}" for c, s in judged.items()))
    write_text_atomic(folder / "study.json", json.dumps(
        {"fractions": fractions, "epochs": epochs, "split": plan.description, "rows": [r.csv_row() for r in rows]},
        indent=2, default=str))
    write_text_atomic(folder / "study.html", render_study(rows, plan.description))
    return rows

