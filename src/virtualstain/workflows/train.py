"""Train a virtual stain from paired images (Lightning loop) and write a model bundle.

``RUN/`` receives ``config.yaml`` (the resolved config), ``splits.json`` (which pixels
trained, validated and tested), ``checkpoints/last.ckpt`` (resume state, written
atomically after every validation) and ``checkpoints/best.ckpt``, ``log/metrics.csv``
(per-epoch losses), ``model/`` (the bundle, from the best checkpoint), ``test/`` (the
held-out inputs, predictions and targets, judged in ``metrics.csv``, ``summary.json`` and
``report.html``) and ``summary.json``.

Interrupted runs (even ``kill -9``) resume from ``last.ckpt`` when ``train`` is called
again with the same ``--out`` and config, losing at most the epoch in progress.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from .._atomic import ensure_writable_dir, write_csv_atomic, write_text_atomic
from ..data.io import write_tiff
from ..data.normalization import Normalizer
from ..data.patches import PatchSampler, fit_patch_size
from ..data.samples import (
    Sample,
    acquisition,
    common_input_channels,
    common_scale,
    manifest_sha256,
    read_manifest,
)
from ..data.splits import SplitPlan, plan_splits
from ..errors import UserError
from ..metrics import pearson_r
from ..models.bundle import ModelBundle, save_bundle
from ..models.registry import build, make_config
from .config import TrainConfig
from .evaluate import evaluate_files, write_evaluation
from .predict import predict


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    model_dir: Path
    validation: dict
    test_rows: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def _names_in_files(samples: list[Sample], attribute: str, count: int) -> list[str]:
    """Channel names stored in every sample's files, if they all agree and are distinct; else []."""
    found = {tuple(getattr(s, attribute)) for s in samples}
    if len(found) == 1:
        (names,) = found
        if len(names) == count and len(set(names)) == count:
            return list(names)
    return []


def _channel_names(samples: list[Sample], config: TrainConfig) -> tuple[list[str], list[str]]:
    """Channel names: from the config, else from the files' metadata, else from paths / indices."""
    n_in, n_out = samples[0].input.shape[0], samples[0].target.shape[0]
    names_in = config.data.input_channel_names or _names_in_files(samples, "input_channel_names", n_in)
    if not names_in:
        names_in = [f"input{c}" for c in (common_input_channels(samples) or range(n_in))]
    names_out = config.data.target_channel_names or _names_in_files(samples, "target_channel_names", n_out)
    if not names_out:
        paths = [Path(p) for p in samples[0].target_paths]
        if len(paths) == n_out and paths:
            stems = [p.stem for p in paths]
            names_out = stems if len(set(stems)) == len(stems) else [p.parent.name for p in paths]
        else:
            names_out = [f"target{c}" for c in range(n_out)]
    if len(names_in) != n_in or len(names_out) != n_out:
        raise UserError(f"data.input_channel_names/target_channel_names give {len(names_in)}/{len(names_out)} names "
                        f"for {n_in}/{n_out} channels; give one name per channel")
    return list(names_in), list(names_out)


def _precision(setting: str) -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


RESUMABLE_CHANGES = {"max_minutes", "max_epochs", "progress_bar", "num_workers"}


def _comparable(config: dict) -> dict:
    training = {k: v for k, v in config.get("training", {}).items() if k not in RESUMABLE_CHANGES}
    return {**config, "training": training}


def _prepare_resume(run: Path, config: TrainConfig, fresh: bool) -> Path | None:
    """The checkpoint to resume from, if ``run`` holds an interrupted run with the same settings.

    The budget (``max_minutes``, ``max_epochs``) and display settings may change between resumes.
    """
    ckpt_dir = run / "checkpoints"
    saved = run / "config.yaml"
    if fresh:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        shutil.rmtree(run / "log", ignore_errors=True)
    last = ckpt_dir / "last.ckpt"
    if last.exists() and saved.exists():
        old = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
        if _comparable(old) != _comparable(config.model_dump(mode="json")):
            raise UserError(f"{run}: holds an interrupted run with another config ({saved}); use another --out, "
                            "or pass --fresh to discard it")
        return last
    return None


def _fit(config: TrainConfig, network: torch.nn.Module, train_ds: torch.utils.data.Dataset,
         val_ds: torch.utils.data.Dataset, run: Path, resume: Path | None) -> dict:
    """Run the Lightning loop; load the best weights into ``network``; return what happened (rank 0)."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader

    from .lightning_module import AtomicLastCheckpoint, VirtualStainModule

    t = config.training
    module = VirtualStainModule(network, loss=t.loss, optimizer=t.optimizer, lr=t.lr, betas=t.betas,
                                lr_schedule=t.lr_schedule, lr_patience=t.lr_patience, lr_factor=t.lr_factor)
    ckpt_dir = run / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min", save_top_k=1,
                           enable_version_counter=False)
    callbacks = [best, AtomicLastCheckpoint(ckpt_dir / "last.ckpt"), LearningRateMonitor(logging_interval="epoch")]
    if t.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=t.early_stopping_patience))
    trainer = pl.Trainer(
        max_epochs=t.max_epochs,
        max_time={"minutes": t.max_minutes} if t.max_minutes else None,
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=_precision(t.precision),
        callbacks=callbacks,
        logger=CSVLogger(save_dir=str(run), name="", version="log", flush_logs_every_n_steps=1),
        default_root_dir=str(run),
        enable_progress_bar=t.progress_bar and sys.stderr.isatty(),
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        deterministic=False,
    )
    train_loader = DataLoader(train_ds, batch_size=t.batch_size, shuffle=False, num_workers=t.num_workers,
                              drop_last=len(train_ds) >= t.batch_size, persistent_workers=t.num_workers > 0)
    val_loader = DataLoader(val_ds, batch_size=1, shuffle=False, num_workers=0)
    steps_before = _checkpoint_progress(resume)[1] if resume else 0
    if resume:
        _keep_log_segment(run)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(resume) if resume else None, weights_only=True)
    seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return {}
    _merge_log_segments(run)
    best_path = Path(best.best_model_path) if best.best_model_path else ckpt_dir / "last.ckpt"
    state = torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"]
    network.load_state_dict({k.removeprefix("network."): v for k, v in state.items() if k.startswith("network.")})
    score = best.best_model_score
    epochs, steps = _checkpoint_progress(ckpt_dir / "last.ckpt")  # also right after DDP-spawn
    return {
        "best_val_loss": float(score) if score is not None else None,
        "epochs": epochs,
        "seconds_this_session": round(seconds, 1),
        "patches_per_second": round((steps - steps_before) * t.batch_size / max(seconds, 1e-9), 2),
        "resumed_from": str(resume) if resume else None,
    }


def _keep_log_segment(run: Path) -> None:
    """Before resuming, move ``log/metrics.csv`` aside (Lightning's CSV logger deletes it on start)."""
    log = run / "log" / "metrics.csv"
    if log.exists():
        k = len(list(log.parent.glob("metrics.segment*.csv")))
        log.rename(log.with_name(f"metrics.segment{k:03d}.csv"))


def _merge_log_segments(run: Path) -> None:
    """Join earlier segments and the current log into one ``log/metrics.csv`` (union of columns)."""
    folder = run / "log"
    segments = sorted(folder.glob("metrics.segment*.csv"))
    if not segments:
        return
    rows: list[dict] = []
    for path in [*segments, folder / "metrics.csv"]:
        if path.exists():
            with open(path, newline="") as fh:
                rows += list(csv.DictReader(fh))
    write_csv_atomic(folder / "metrics.csv", rows, sorted({k for r in rows for k in r}))
    for path in segments:
        path.unlink()


def _checkpoint_progress(path: Path) -> tuple[int, int]:
    """(completed epochs, optimizer steps) recorded in a Lightning checkpoint."""
    if not path.exists():
        return 0, 0
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return int(ckpt["epoch"]) + 1, int(ckpt["global_step"])


def _validation_pearson(bundle: ModelBundle, samples: list[Sample], plan: SplitPlan, max_size: int) -> list[float]:
    rs = []
    scale = bundle.config.scale
    for r in plan.of("val"):
        x = samples[r.sample].input[r.centre_crop(max_size)]
        y = samples[r.sample].target[r.centre_crop(max_size, scale)]
        pred = predict(bundle, x, source=samples[r.sample].name)
        rs.append([pearson_r(pred[c], y[c]) for c in range(y.shape[0])])
    return np.nanmean(np.array(rs), axis=0).tolist() if rs else []


def evaluate_test_regions(bundle: ModelBundle, samples: list[Sample], plan: SplitPlan, out: Path) -> list[dict]:
    """Predict every test region, write input/prediction/target TIFFs, and judge them (``report.html``).

    The judging is :func:`~virtualstain.workflows.evaluate.evaluate_files` with the inputs as baseline (not
    for super-resolution, whose inputs are on another grid: see :mod:`virtualstain.workflows.srqpi`); its
    ``metrics.csv`` gains a ``region`` column (the test region's bounds in its field, input pixels).
    """
    regions = plan.of("test")
    bounds = {}
    scale = bundle.config.scale
    for k, r in enumerate(regions):
        s = samples[r.sample]
        x, y = s.input[r.slices()], s.target[r.slices(scale)]
        target_px = s.pixel_size_um / scale if s.pixel_size_um else None
        name = s.name if plan.mode != "spatial" else f"{s.name}_test"
        if sum(1 for q in regions if samples[q.sample].name == s.name) > 1:
            name = f"{name}_{k}"
        pred = predict(bundle, x, source=s.name)
        for folder, array, names, px in (("prediction", pred, bundle.output_channel_names, target_px),
                                         ("target", y, bundle.output_channel_names, target_px),
                                         ("input", x, bundle.input_channel_names, s.pixel_size_um)):
            write_tiff(out / folder / f"{name}.tif", array, pixel_size_um=px, channel_names=names)
        bounds[f"{name}.tif"] = json.dumps(r.to_dict()["bounds"])
    if not regions:
        return []
    files = [out / "prediction" / n for n in bounds]
    inputs = [out / "input" / n for n in bounds] if scale == 1 else None  # an LR input is no same-grid baseline
    evaluation = evaluate_files(files, [out / "target" / n for n in bounds], inputs=inputs, max_panels=4)
    for row in evaluation.rows:
        row["region"] = bounds[row["image"]]
    write_evaluation(evaluation, out, title=f"Held-out test regions ({plan.description})")
    return evaluation.rows


def train(data: str | os.PathLike | list[Sample], out: str | os.PathLike, config: TrainConfig | None = None, *,
          max_minutes: float | None = None, fresh: bool = False) -> TrainResult:
    """Train a model on a manifest (or samples) and write ``out/model`` and the run's records.

    Parameters
    ----------
    data : path or list of Sample
        A CSV manifest (see :mod:`virtualstain.data.samples`) or in-memory samples
        (:func:`~virtualstain.data.samples.samples_from_arrays`).
    out : path
        Run folder.
    config : TrainConfig, optional
        Defaults everywhere when omitted.
    max_minutes : float, optional
        Wall-clock budget for training (overrides ``training.max_minutes``).
    fresh : bool
        Discard an interrupted run in ``out`` instead of resuming it.

    Returns
    -------
    TrainResult
    """
    config = (config or TrainConfig()).model_copy(deep=True)
    if max_minutes is not None:
        config.training.max_minutes = max_minutes
    run = ensure_writable_dir(out)
    dims = config.model.spatial_dims
    if isinstance(data, (str, os.PathLike)):
        manifest_path: Path | None = Path(data)
        samples = read_manifest(manifest_path, dims, config.data.input_channels)
    else:
        manifest_path, samples = None, list(data)
    plan = plan_splits(samples, config.split.val_fraction, config.split.test_fraction, config.training.seed)
    train_regions, val_regions = plan.of("train"), plan.of("val")
    if not train_regions:
        raise UserError("no training data after splitting; mark rows split=train or lower the val/test fractions")
    if not val_regions:
        raise UserError("no validation data after splitting; add split=val rows or raise split.val_fraction")
    scale = common_scale(samples, manifest_path or "samples")
    x_norm = Normalizer.fit([samples[r.sample].input[r.slices()] for r in train_regions],
                            config.data.input_normalization, config.data.percentiles, "inputs")
    y_norm = Normalizer.fit([samples[r.sample].target[r.slices(scale)] for r in train_regions],
                            config.data.target_normalization, config.data.percentiles, "targets")
    inputs = [x_norm(s.input) for s in samples]
    targets = [y_norm(s.target) for s in samples]
    m = config.model
    net_config = make_config(m.architecture, inputs[0].shape[0], targets[0].shape[0], dims, scale, depth=m.depth,
                             base_width=m.base_width, max_width=m.max_width, residual=m.residual,
                             downsample_z=m.downsample_z)
    torch.manual_seed(config.training.seed)
    network = build(m.architecture, net_config)
    patch = fit_patch_size(config.patch_size(), train_regions, net_config.size_multiple())
    sampler = PatchSampler(inputs, targets, train_regions, patch, config.data.min_signal_fraction, config.data.augment,
                           scale=scale)

    from .lightning_module import PatchDataset, RegionDataset

    train_ds = PatchDataset(sampler, config.training.patches_per_epoch, config.training.seed)
    val_ds = RegionDataset(inputs, targets, val_regions[: config.training.val_max_regions],
                           net_config.size_multiple(), config.training.val_max_size, scale)
    resume = _prepare_resume(run, config, fresh)
    write_text_atomic(run / "config.yaml", config.to_yaml())
    write_text_atomic(run / "splits.json", json.dumps({
        "mode": plan.mode, "description": plan.description,
        "samples": [{"name": s.name, "source": s.source, "shape": list(s.spatial_shape)} for s in samples],
        "regions": [r.to_dict() for r in plan.regions]}, indent=2))
    started = time.perf_counter()
    fit_info = _fit(config, network, train_ds, val_ds, run, resume)
    if not fit_info:  # a non-zero DDP rank: rank 0 writes the outputs
        return TrainResult(run, run / "model", {})
    names_in, names_out = _channel_names(samples, config)
    pixel_sizes = {s.pixel_size_um for s in samples if s.pixel_size_um}
    bundle = ModelBundle(
        network=network.eval(), architecture=m.architecture, input_normalizer=x_norm, target_normalizer=y_norm,
        input_channel_names=names_in, output_channel_names=names_out, input_channels=common_input_channels(samples),
        pixel_size_um=pixel_sizes.pop() if len(pixel_sizes) == 1 else None,
        acquisition=acquisition(samples),
        info={"training": {"config": config.model_dump(mode="json"), "patch_size": list(patch),
                           "manifest": str(manifest_path) if manifest_path else None,
                           "manifest_sha256": manifest_sha256(manifest_path, samples),
                           "split_mode": plan.mode, "split": plan.description,
                           "n_samples": len(samples),
                           "input_mean": [float(np.mean([samples[r.sample].input[r.slices()][c].mean()
                                                         for r in train_regions])) for c in range(len(names_in))],
                           **fit_info}},
    )
    val_r = _validation_pearson(bundle, samples, plan, config.training.val_max_size)
    bundle.info["validation"] = {"loss": fit_info["best_val_loss"], "loss_name": config.training.loss,
                                 "pearson_r": dict(zip(names_out, val_r))}
    model_dir = save_bundle(bundle, run / "model")
    test_rows = evaluate_test_regions(bundle, samples, plan, run / "test")
    test_r = {c: float(np.nanmean([r["pearson_r"] for r in test_rows if r["channel"] == c])) for c in names_out} \
        if test_rows else {}
    summary = {"model": str(model_dir), "split_mode": plan.mode, "split": plan.description,
               "validation_pearson_r": dict(zip(names_out, val_r)), "test_pearson_r": test_r,
               "wall_seconds": round(time.perf_counter() - started, 1), **fit_info}
    write_text_atomic(run / "summary.json", json.dumps(summary, indent=2))
    return TrainResult(run, model_dir, bundle.info["validation"], test_rows, summary)
