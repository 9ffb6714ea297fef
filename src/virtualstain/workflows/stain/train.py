"""Train a virtual stain from paired images (Lightning loop) and write a model bundle.

``RUN/`` receives ``config.yaml`` (the resolved config), ``splits.json`` (which pixels
trained, validated and tested), ``checkpoints/last.ckpt`` (resume state, written
atomically after every validation) and ``checkpoints/best.ckpt``, ``log/metrics.csv``
(per-epoch losses), ``model/`` (the bundle, from the best checkpoint), ``test/`` (the
held-out inputs, predictions and targets, judged in ``metrics.csv``, ``summary.json`` and
``report.html``) and ``summary.json``.

Interrupted runs (even ``kill -9``) resume from ``last.ckpt`` when ``train`` is called
again with the same ``--out`` and config, losing at most the epoch in progress
(:mod:`virtualstain.training.fit`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..._atomic import atomic_path, ensure_writable_dir, write_text_atomic
from ...data.acquisition import Acquisition
from ...data.augmentation import IntensityAugmentation
from ...data.normalization import Normalizer
from ...data.patches import PatchSampler, fit_patch_size, signal_thresholds
from ...data.samples import Sample, common_input_channels, common_scale, manifest_sha256, names_from_files, read_manifest
from ...data.splits import Region, SplitPlan, plan_splits
from ...errors import UserError
from ...evaluation.types import Evaluation, ImageRow
from ...inference.domain_check import fit_input_domain
from ...inference.predict import predict
from ...metrics import pearson_r
from ...models.bundle import ModelBundle, TrainingRecord, ValidationRecord, load_bundle, save_bundle
from ...models.registry import build, make_config
from ...models.virfluonet import VirFluoNetGenerator
from ...training.auto import (
    Choice,
    choose_intensity_augmentation,
    choose_patches_per_epoch,
    measure_throughput,
    read_choices,
    write_choices,
)
from ...training.config import TrainConfig, check_hardware
from ...training.fit import FitResult, fit, is_finished, prepare_resume
from ...training.initial_weights import load_initial_weights
from ...training.losses import make_loss
from ...training.precision import choose_precision
from ...training.threads import FreeCoreThreads
from .held_out import HeldOut, judge_held_out, predict_held_out
from .uncertainty import calibrate_uncertainty

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from ...training.lightning_module import RegionDataset


@dataclass
class TrainSummary(FitResult):
    """What ``RUN/summary.json`` records (and ``virtualstain train`` prints): the run's split and scores, then
    what the fit loop did (:class:`~virtualstain.training.fit.FitResult`)."""

    model: str
    split_mode: str
    split: str
    validation_pearson_r: dict[str, float]
    test_pearson_r: dict[str, float]
    wall_seconds: float
    choices: list[str]
    initialized_from: str | None = None

    def to_dict(self) -> dict:
        fit = {f.name for f in dataclasses.fields(FitResult)}
        record = dataclasses.asdict(self)
        return {**{k: v for k, v in record.items() if k not in fit}, **{k: v for k, v in record.items() if k in fit}}


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes
    ----------
    run_dir, model_dir : Path
        The run folder and its bundle.
    validation : ValidationRecord
        Validation of the saved weights.
    summary : TrainSummary or None
        As written to ``summary.json`` (None on a non-zero DDP rank).
    held_out : list of HeldOut
        The test regions with their predictions, in memory.
    test : Evaluation or None
        The judgement of the test regions (None without test regions).
    bundle : ModelBundle or None
        The model as saved in ``model_dir``.
    finished_before : bool
        The run had already finished with this config and data: nothing was trained or written again, and
        ``held_out``/``test`` are empty (the test judgement is in ``RUN/test``).
    """

    run_dir: Path
    model_dir: Path
    validation: ValidationRecord
    summary: TrainSummary | None = None
    held_out: list[HeldOut] = field(default_factory=list)
    test: Evaluation | None = None
    bundle: ModelBundle | None = None

    finished_before: bool = False

    @property
    def test_rows(self) -> list[ImageRow]:
        """One :class:`~virtualstain.evaluation.types.ImageRow` per test image and channel (list of ImageRow)."""
        return self.test.rows if self.test else []


def _names_in_files(samples: list[Sample], attribute: str, count: int) -> list[str]:
    """Channel names stored in every sample's files, if they all agree and are distinct; else []."""
    found = {tuple(getattr(s, attribute)) for s in samples}
    if len(found) == 1:
        (names,) = found
        if len(names) == count and len(set(names)) == count:
            return list(names)
    return []


def _channel_names(samples: list[Sample], config: TrainConfig) -> tuple[list[str], list[str]]:
    """Channel names: from the config, else from the files' metadata, else from the file names (a joined input's
    files; one target file per channel), else indices."""
    first = samples[0]
    n_in, n_out = first.input.shape[0], first.target.shape[0]
    names_in = config.data.input_channel_names or _names_in_files(samples, "input_channel_names", n_in)
    if not names_in and len(first.input_paths) > 1:
        names_in = names_from_files(first.input_paths, first.input_file_channels, first.input_channels)
    if not names_in:
        names_in = [f"input{c}" for c in (common_input_channels(samples) or range(n_in))]
    names_out = config.data.target_channel_names or _names_in_files(samples, "target_channel_names", n_out)
    if not names_out and len(first.target_paths) == n_out:
        names_out = names_from_files(first.target_paths, [1] * n_out)
    if not names_out:
        names_out = [f"target{c}" for c in range(n_out)]
    if len(names_in) != n_in or len(names_out) != n_out:
        raise UserError(f"data.input_channel_names/target_channel_names give {len(names_in)}/{len(names_out)} names "
                        f"for {n_in}/{n_out} channels; give one name per channel")
    return list(names_in), list(names_out)


def _validation_pearson(bundle: ModelBundle, samples: list[Sample], plan: SplitPlan, max_size: int) -> list[float]:
    rs = []
    for r in plan.of("val"):
        x, y = r.crop(samples[r.sample], max_size)
        pred = predict(bundle, x, source=samples[r.sample].name)
        rs.append([pearson_r(pred[c], y[c]) for c in range(y.shape[0])])
    return np.nanmean(np.array(rs), axis=0).tolist() if rs else []


def _finished_result(run: Path) -> TrainResult:
    """What a finished run recorded (``summary.json``, the bundle), for a rerun that has nothing to do."""
    recorded = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    summary = TrainSummary(**{f.name: recorded.get(f.name, "") for f in dataclasses.fields(TrainSummary)})
    bundle = load_bundle(run / "model")
    return TrainResult(run, run / "model", bundle.validation, summary, bundle=bundle, finished_before=True)


def _automatic_choices(config: TrainConfig, run: Path, resume: Path | None, network: torch.nn.Module,
                       sampler: PatchSampler, train_regions: list[Region], val_ds: RegionDataset,
                       augmentation: Choice) -> list[Choice]:
    """The settings left on ``auto`` and the arithmetic, each with its reason; a resumed run reuses its record
    (``augmentation``, which follows from the data alone, is the same on resume)."""
    t = config.training
    recorded = read_choices(run / "choices.json") if resume else None
    if recorded:
        return recorded
    precision = choose_precision(t.precision, t.accelerator)
    choices = [Choice("training.precision", precision.lightning, precision.reason), augmentation]
    if t.patches_per_epoch == "auto":
        regions = [val_ds[i] for i in range(len(val_ds))]
        throughput = (measure_throughput(network, sampler, regions, t.batch_size, precision.lightning, seed=t.seed)
                      if _one_cpu_process(config) else None)  # DDP ranks must agree: no timing there
        val_pixels = sum(int(np.prod(x.shape[1:])) for x, _ in val_ds.items)
        choices.append(choose_patches_per_epoch(sum(int(np.prod(r.shape)) for r in train_regions), val_pixels,
                                                int(np.prod(sampler.patch_size)), t.batch_size, throughput,
                                                60 * t.max_minutes if t.max_minutes else None))
    else:
        choices.append(Choice("training.patches_per_epoch", int(t.patches_per_epoch), "as configured"))
    return choices


def _member_config(config: TrainConfig, k: int) -> TrainConfig:
    """The config ensemble member ``k`` trains with: seed + k, and its equal share of a time budget."""
    member = config.model_copy(deep=True)
    member.training.seed = config.training.seed + k
    if config.training.max_minutes:
        member.training.max_minutes = config.training.max_minutes / config.training.ensemble
    return member


def _train_member(k: int, config: TrainConfig, new_network: Callable[[int], torch.nn.Module], train_ds: Dataset,
                  val_ds: RegionDataset, run: Path, fresh: bool, data_sha256: str, loss_fn: Callable,
                  threads: FreeCoreThreads | None, log: Callable[[str], None] | None) -> torch.nn.Module:
    """Train (or, when finished before, load) ensemble member ``k`` in ``run/members/k``: the same split, sampler
    and validation as the first member, another seed; resumes like any run."""
    from safetensors.torch import load_file, save_file

    member_config = _member_config(config, k)
    member_run = run / "members" / str(k)
    if fresh:
        shutil.rmtree(member_run, ignore_errors=True)
    member_run.mkdir(parents=True, exist_ok=True)
    network = new_network(member_config.training.seed)
    done = member_run / "weights.safetensors"
    if done.exists() and (member_run / "config.yaml").read_text(encoding="utf-8") == member_config.to_yaml():
        network.load_state_dict(load_file(str(done)))
        return network.eval()
    resume = prepare_resume(member_run, member_config, fresh, data_sha256)
    write_text_atomic(member_run / "config.yaml", member_config.to_yaml())
    (log or (lambda line: None))(f"ensemble member {k + 1} of {config.training.ensemble} (seed "
                                 f"{member_config.training.seed})")
    fit(member_config, network, train_ds, val_ds, member_run, resume, loss_fn, threads)
    with atomic_path(done) as tmp:
        save_file({n: v.detach().cpu().contiguous() for n, v in network.state_dict().items()}, str(tmp))
    return network.eval()


def _normalised(samples: list[Sample], x_norm: Normalizer, y_norm: Normalizer) -> list[Sample]:
    return [dataclasses.replace(s, input=x_norm(s.input), target=y_norm(s.target)) for s in samples]


def train(data: str | os.PathLike | list[Sample], out: str | os.PathLike, config: TrainConfig | None = None, *,
          max_minutes: float | None = None, fresh: bool = False, log: Callable[[str], None] | None = None,
          init: str | os.PathLike | None = None, check_registration: bool = False) -> TrainResult:
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
    log : callable, optional
        Receives one line per automatic choice (settings left on ``auto``, the arithmetic) before training.
    init : path, optional
        A trained bundle of the same architecture and channels to start from (fine-tuning; see
        :mod:`virtualstain.training.initial_weights`). A resumed run continues from its checkpoint instead.
    check_registration : bool
        First find pairs whose fluorescence is misaligned with its label-free image by more than a pixel
        (:mod:`~virtualstain.workflows.stain.registration_check`): logged and listed in ``out/registration.csv``.

    Returns
    -------
    TrainResult
    """
    config = (config or TrainConfig()).model_copy(deep=True)
    if max_minutes is not None:
        config.training.max_minutes = max_minutes
    check_hardware(config)  # before any image is read
    threads = FreeCoreThreads() if _one_cpu_process(config) else None
    try:
        return _train(data, out, config, fresh, log, threads, init, check_registration)
    finally:
        if threads is not None:
            threads.restore()


def _one_cpu_process(config: TrainConfig) -> bool:
    """Training runs in this one process on the CPU (no DDP, no GPU): it may time itself and pick its threads."""
    t = config.training
    on_cpu = t.accelerator == "cpu" or (t.accelerator == "auto" and not torch.cuda.is_available())
    return on_cpu and t.devices in (1, "auto") and t.num_nodes == 1 and t.strategy == "auto"


def _train(data: str | os.PathLike | list[Sample], out: str | os.PathLike, config: TrainConfig, fresh: bool,
           log: Callable[[str], None] | None, threads: FreeCoreThreads | None,
           init: str | os.PathLike | None = None, check_registration: bool = False) -> TrainResult:
    """:func:`train` after the config is settled."""
    run = ensure_writable_dir(out)
    dims = config.model.spatial_dims
    if isinstance(data, (str, os.PathLike)):
        manifest_path: Path | None = Path(data)
        samples = read_manifest(data, dims, config.data.input_channels)
    else:
        manifest_path, samples = None, list(data)
    plan = plan_splits(samples, config.split.val_fraction, config.split.test_fraction, config.training.seed)
    train_regions, val_regions = plan.of("train"), plan.of("val")
    if not train_regions:
        raise UserError("no training data after splitting; mark rows split=train or lower the val/test fractions")
    if not val_regions:
        raise UserError("no validation data after splitting; add split=val rows or raise split.val_fraction")
    scale = common_scale(samples, manifest_path or "samples")
    data_sha256 = manifest_sha256(manifest_path, samples)
    if not fresh and is_finished(run, config, data_sha256):
        return _finished_result(run)
    resume = prepare_resume(run, config, fresh, data_sha256)
    if check_registration:
        from .registration_check import check_registration as check

        check(samples, config, run, log or (lambda line: None))
    train_crops = [r.crop(samples[r.sample]) for r in train_regions]
    x_norm = Normalizer.fit([x for x, _ in train_crops], config.data.input_normalization, config.data.percentiles,
                            "inputs", config.data.input_normalization_scope)
    y_norm = Normalizer.fit([y for _, y in train_crops], config.data.target_normalization, config.data.percentiles,
                            "targets")
    normalised = _normalised(samples, x_norm, y_norm)
    m = config.model
    net_config = make_config(m.architecture, samples[0].input.shape[0], samples[0].target.shape[0], dims, scale,
                             depth=m.depth, base_width=m.base_width, max_width=m.max_width, residual=m.residual,
                             downsample_z=None if m.downsample_z else False, upsampling=m.upsampling)
    target_means = np.mean([y_norm(y).reshape(len(y), -1).mean(1) for _, y in train_crops], axis=0).tolist()

    def new_network(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        net = build(m.architecture, net_config)
        if isinstance(net, VirFluoNetGenerator):  # its tanh starts at the training targets' mean, not ½
            net.start_at(target_means)
        return net

    network = new_network(config.training.seed)
    if init is not None:
        (log or (lambda line: None))(load_initial_weights(network, m.architecture, init))
    patch = fit_patch_size(config.patch_size(), train_regions, net_config.size_multiple())
    augmentation = choose_intensity_augmentation(config.data.intensity_augmentation,
                                                 sum(int(np.prod(r.shape)) for r in train_regions), int(np.prod(patch)))
    sampler = PatchSampler([s.input for s in normalised], [s.target for s in normalised], train_regions, patch,
                           config.data.min_signal_fraction, config.data.augment, scale=scale,
                           intensity_augmentation=IntensityAugmentation() if augmentation.value == "on" else None)

    from ...training.lightning_module import PatchDataset, RegionDataset

    val_regions = val_regions[: config.training.val_max_regions]
    val_ds = RegionDataset(normalised, val_regions, net_config.size_multiple(), config.training.val_max_size)
    if threads is not None:
        threads.update()  # the probe below runs with the threads the first epoch will have
    choices = _automatic_choices(config, run, resume, network, sampler, train_regions, val_ds, augmentation)
    for choice in choices:
        (log or (lambda line: None))(choice.line())
    patches_per_epoch = next(int(c.value) for c in choices if c.setting == "training.patches_per_epoch")
    train_ds = PatchDataset(sampler, patches_per_epoch, config.training.seed)
    write_text_atomic(run / "config.yaml", config.to_yaml())
    write_choices(run / "choices.json", choices)
    write_text_atomic(run / "splits.json", json.dumps({
        "mode": plan.mode, "description": plan.description, "data_sha256": data_sha256,
        "samples": [{"name": s.name, "source": s.source, "shape": list(s.spatial_shape)} for s in samples],
        "regions": [r.to_dict() for r in plan.regions]}, indent=2))
    t = config.training
    thresholds = (signal_thresholds([normalised[r.sample].target[r.slices(scale)] for r in train_regions])
                  if t.foreground_weight else None)
    loss_fn = make_loss(t.loss, t.foreground_weight, thresholds)
    started = time.perf_counter()
    fitted = fit(_member_config(config, 0), network, train_ds, val_ds, run, resume, loss_fn, threads)
    if fitted is None:  # a non-zero DDP rank: rank 0 writes the outputs
        return TrainResult(run, run / "model", ValidationRecord())
    members = [_train_member(k, config, new_network, PatchDataset(sampler, patches_per_epoch, config.training.seed + k),
                             val_ds, run, fresh, data_sha256, loss_fn, threads, log)
               for k in range(1, config.training.ensemble)]
    names_in, names_out = _channel_names(samples, config)
    pixel_sizes = {s.pixel_size_um for s in samples if s.pixel_size_um}
    bundle = ModelBundle(
        network=network.eval(), members=members, architecture=m.architecture, input_normalizer=x_norm,
        target_normalizer=y_norm,
        input_channel_names=names_in, output_channel_names=names_out, input_channels=common_input_channels(samples),
        pixel_size_um=pixel_sizes.pop() if len(pixel_sizes) == 1 else None,
        acquisition=Acquisition.pooled([s.acquisition for s in samples]),
        training=TrainingRecord(
            config=config.model_dump(mode="json"), patch_size=list(patch),
            manifest=str(manifest_path) if manifest_path else None,
            manifest_sha256=data_sha256, split_mode=plan.mode, split=plan.description,
            n_samples=len(samples),
            input_mean=[float(np.mean([x[c].mean() for x, _ in train_crops])) for c in range(len(names_in))],
            **dataclasses.asdict(fitted)),
    )
    bundle.input_domain = fit_input_domain(bundle, [r.crop(normalised[r.sample])[0] for r in train_regions],
                                           [r.crop(normalised[r.sample])[0] for r in plan.of("val")], t.seed)
    val_r = _validation_pearson(bundle, samples, plan, config.training.val_max_size)
    bundle.validation = ValidationRecord(loss=fitted.best_val_loss, loss_name=config.training.loss,
                                         pearson_r=dict(zip(names_out, val_r)))
    bundle.uncertainty, sigma_panels = calibrate_uncertainty(bundle, samples, plan, config.training.val_max_size,
                                                             config.training.val_max_regions)
    model_dir = save_bundle(bundle, run / "model")
    held_out = predict_held_out(bundle, samples, plan)
    test = judge_held_out(held_out, bundle, plan, run / "test", sigma_panels)
    test_r = {c: s.pearson_r_mean for c, s in test.channels.items()} if test else {}
    summary = TrainSummary(model=str(model_dir), split_mode=plan.mode, split=plan.description,
                           validation_pearson_r=dict(zip(names_out, val_r)), test_pearson_r=test_r,
                           wall_seconds=round(time.perf_counter() - started, 1),
                           choices=[c.line() for c in choices], initialized_from=str(init) if init else None,
                           **dataclasses.asdict(fitted))
    write_text_atomic(run / "summary.json", json.dumps(summary.to_dict(), indent=2))
    return TrainResult(run, model_dir, bundle.validation, summary, held_out, test, bundle)
