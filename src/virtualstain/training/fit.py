"""The Lightning fit loop: resume from the last checkpoint, early stopping, budget, log segments.

``RUN/checkpoints/last.ckpt`` is rewritten atomically after every validation, so a run killed at
any moment (even ``kill -9``) resumes from its last complete epoch when :func:`fit` is called again
with the same run folder and config (:func:`prepare_resume`). Lightning's CSV logger deletes its
file when it starts, so a resumed run keeps earlier log segments aside and joins them at the end.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import json
import logging
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import Dataset

from .._atomic import write_csv_atomic
from ..errors import Interrupted, UserError
from .config import TrainConfig
from .precision import choose_precision
from .schedule import CosineBudgetSchedule
from .threads import FreeCoreThreads

#: Settings that may change between an interrupted run and its resume: when to stop, and the display.
RESUMABLE_CHANGES = {"max_minutes", "max_epochs", "early_stopping_patience", "progress_bar", "num_workers"}


@dataclass
class FitResult:
    """What one (possibly resumed) session of the fit loop did; rank 0 only."""

    best_val_loss: float | None
    epochs: int
    seconds_this_session: float
    patches_per_second: float
    resumed_from: str | None
    stop_reason: str


def _comparable(config: dict) -> dict:
    training = {k: v for k, v in config.get("training", {}).items() if k not in RESUMABLE_CHANGES}
    return {**config, "training": training}


def prepare_resume(run: Path, config: TrainConfig, fresh: bool, data_sha256: str | None = None) -> Path | None:
    """The checkpoint to resume from, if ``run`` holds an interrupted run with the same settings and data.

    The budget (``max_minutes``, ``max_epochs``), the early-stopping patience (null turns it off) and display
    settings may change between resumes.
    ``fresh`` discards the checkpoints and logs first; a half-written ``*.ckpt.part`` of a killed run is
    removed. ``data_sha256`` is compared with the one recorded in ``splits.json`` when the run recorded it.

    Raises
    ------
    UserError
        ``run`` holds an interrupted run with another config or other data.
    """
    ckpt_dir = run / "checkpoints"
    saved = run / "config.yaml"
    if fresh:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        shutil.rmtree(run / "log", ignore_errors=True)
    for part in ckpt_dir.glob("*.ckpt.part"):  # a checkpoint being written when the run was killed (kill -9)
        part.unlink(missing_ok=True)
    last = ckpt_dir / "last.ckpt"
    if not (last.exists() and saved.exists()):
        return None
    if _comparable(_read_record(saved, yaml.safe_load)) != _comparable(config.model_dump(mode="json")):
        raise UserError(f"{run}: holds an interrupted run with another config ({saved}); use another --out, "
                        "or pass --fresh to discard it")
    splits = run / "splits.json"
    recorded = _read_record(splits, json.loads).get("data_sha256") if splits.exists() else None
    if data_sha256 and recorded and recorded != data_sha256:
        raise UserError(f"{run}: holds a run on other data (the images or the manifest changed since {splits} was "
                        "written); use another --out, or pass --fresh to discard it")
    return last


def is_finished(run: Path, config: TrainConfig, data_sha256: str) -> bool:
    """Whether ``run`` holds a finished run of exactly ``config`` (budget included) on this data: rerunning
    it would train nothing. Its ``summary.json``, written last, must record the epochs of its ``last.ckpt``."""
    saved, summary, last = run / "config.yaml", run / "summary.json", run / "checkpoints" / "last.ckpt"
    splits = run / "splits.json"
    if not all(p.exists() for p in (saved, summary, last, splits, run / "model" / "model.json")):
        return False
    if _read_record(saved, yaml.safe_load) != config.model_dump(mode="json"):
        return False
    if _read_record(splits, json.loads).get("data_sha256") != data_sha256:
        return False
    return _read_record(summary, json.loads).get("epochs") == checkpoint_progress(last)[0]


def _read_record(path: Path, parse: Callable[[str], object]) -> dict:
    """A run's YAML or JSON record as a dict ({} when it holds something else)."""
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: damaged ({exc}); pass --fresh to start this run again") from None
    return data if isinstance(data, dict) else {}


def fit(config: TrainConfig, network: torch.nn.Module, train_ds: Dataset, val_ds: Dataset, run: Path,
        resume: Path | None, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        threads: FreeCoreThreads | None = None) -> FitResult | None:
    """Run the Lightning loop; load the best weights into ``network``; return what happened (None off rank 0).

    The weights validated, selected (lowest ``val_loss``) and loaded are the moving average when
    ``training.ema_decay`` is set. ``loss_fn(prediction, target)`` is the training loss. ``threads`` (CPU,
    one process) keeps torch's thread count at the free cores, epoch by epoch.

    Raises
    ------
    Interrupted
        SIGINT (Ctrl-C) or SIGTERM arrived: the last complete epoch is saved, and the same call resumes.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader

    from .lightning_module import AtomicCheckpoints, EarlyStoppingAsConfigured, VirtualStainModule, deployable_weights

    t = config.training
    n_train = len(train_ds)  # type: ignore[arg-type]
    drop_last = n_train >= t.batch_size
    steps_per_epoch = n_train // t.batch_size if drop_last else 1
    schedule = CosineBudgetSchedule(total_steps=t.epoch_limit() * steps_per_epoch,
                                    budget_seconds=60 * t.max_minutes if t.max_minutes else None,
                                    warmup=t.warmup_fraction)
    common: dict[str, Any] = dict(optimizer=t.optimizer, lr=t.lr, betas=t.betas, lr_schedule=t.lr_schedule,
                                  schedule=schedule, lr_patience=t.lr_patience, lr_factor=t.lr_factor,
                                  ema_decay=t.ema_decay, threads=threads)
    module: VirtualStainModule
    if t.adversarial is None:
        module, steps_per_batch, clip = VirtualStainModule(network, loss_fn=loss_fn, **common), 1, t.gradient_clip_norm
    else:  # manual optimisation: the module clips each network's gradients itself
        from ..models.virfluonet import make_discriminator
        from .adversarial import OPTIMIZER_STEPS_PER_BATCH, AdversarialModule

        discriminator = make_discriminator(t.adversarial.discriminator, _pair_channels(network), config.patch_size(),
                                           t.adversarial.discriminator_width or
                                           (64 if t.adversarial.discriminator == "patchgan" else 32))
        module = AdversarialModule(network, discriminator, loss_fn, t.adversarial, t.gradient_clip_norm, **common)
        steps_per_batch, clip = OPTIMIZER_STEPS_PER_BATCH, None
    checkpoints = AtomicCheckpoints(run / "checkpoints")
    callbacks: list = [checkpoints]
    if t.early_stopping_patience:
        # checked when validation ends, not at the end of the training epoch: an epoch resumed from last.ckpt
        # (saved at validation end) has no fresh validation metric to check
        callbacks.append(EarlyStoppingAsConfigured(monitor="val_loss", mode="min", patience=t.early_stopping_patience,
                                                   check_on_train_epoch_end=False))
    with _quiet_lightning():  # Lightning's tips and notes appear when the Trainer is made
        trainer = pl.Trainer(
            max_epochs=t.epoch_limit(),
            max_time=datetime.timedelta(minutes=t.max_minutes) if t.max_minutes else None,
            accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
            strategy=_strategy(t.strategy, adversarial=t.adversarial is not None),
            precision=choose_precision(t.precision, t.accelerator).lightning,  # type: ignore[arg-type]
            gradient_clip_val=clip, gradient_clip_algorithm="norm" if clip else None,
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
                              drop_last=drop_last, persistent_workers=t.num_workers > 0)
    val_loader = DataLoader(val_ds, batch_size=1, shuffle=False, num_workers=0)
    steps_before = checkpoint_progress(resume)[1] if resume else 0
    if resume:
        _keep_log_segment(run)
    started = time.perf_counter()
    with _quiet_lightning(), _signals_recorded() as received:
        try:
            trainer.fit(module, train_loader, val_loader, ckpt_path=str(resume) if resume else None,
                        weights_only=True)
        except SystemExit:  # Lightning turns SIGTERM into SIGTERMException and Ctrl-C into sys.exit(1)
            if not received:
                raise
        if received:
            epochs = checkpoint_progress(checkpoints.last)[0]
            raise Interrupted(received[0], f"training interrupted by {signal.Signals(received[0]).name} after "
                                           f"{epochs} complete epoch(s) (saved in {checkpoints.last}); rerun the "
                                           "same command to resume")
    seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return None
    _merge_log_segments(run)
    best_path = checkpoints.best if checkpoints.best.exists() else checkpoints.last
    best = load_checkpoint(best_path)
    network.load_state_dict(deployable_weights(best["state_dict"]))
    epochs, steps = checkpoint_progress(checkpoints.last)  # read from disk: also right after DDP-spawn
    score = best.get("val_loss")
    return FitResult(
        best_val_loss=float(score) if score is not None else None,
        epochs=epochs,
        seconds_this_session=round(seconds, 1),
        patches_per_second=round((steps - steps_before) // steps_per_batch * t.batch_size / max(seconds, 1e-9), 2),
        resumed_from=str(resume) if resume else None,
        stop_reason=_stop_reason(checkpoints.last, config),
    )


def _pair_channels(generator: torch.nn.Module) -> int:
    """Channels of the discriminator's input: the generator's input (the condition) and its output."""
    from ..models.inference import network_config

    net = network_config(generator)
    return net.in_channels + net.out_channels


def _strategy(strategy: str, adversarial: bool) -> str:
    """Lightning's strategy: under DDP, adversarial training leaves each network out of the other's backward
    pass, so DDP must look for unused parameters."""
    if adversarial and strategy in ("ddp", "ddp_spawn"):
        return f"{strategy}_find_unused_parameters_true"
    return strategy


def _stop_reason(last: Path, config: TrainConfig) -> str:
    """Why training ended: ``max_epochs``, ``early_stopping`` or ``time_budget``."""
    t = config.training
    ckpt = load_checkpoint(last)
    if int(ckpt["epoch"]) + 1 >= t.epoch_limit():
        return "max_epochs"
    stopped = [state for key, state in ckpt.get("callbacks", {}).items() if key.startswith("EarlyStopping")]
    if t.early_stopping_patience and any(s.get("wait_count", 0) >= t.early_stopping_patience for s in stopped):
        return "early_stopping"
    return "time_budget"


@contextlib.contextmanager
def _signals_recorded() -> Iterator[list[int]]:
    """Record SIGINT and SIGTERM while training (main thread only); SIGINT still interrupts, and Lightning's
    own SIGTERM handler (which stops after the current batch) runs beside this one."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def on_sigint(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    def on_sigterm(signum, frame):
        received.append(signum)

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, on_sigint),
                signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's advertising tips, its notes on resuming into a non-empty folder (we resume on purpose) and
    deprecation notices of its dependencies are not the user's concern; warnings about the run still show."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = logger.level
    logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for message in (".*does not have many workers.*", ".*exists and is not empty.*", ".*LeafSpec.*",
                        ".*litlogger.*"):
            warnings.filterwarnings("ignore", message=message)
        try:
            yield
        finally:
            logger.setLevel(level)


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


def checkpoint_progress(path: Path) -> tuple[int, int]:
    """(completed epochs, optimizer steps) recorded in a Lightning checkpoint."""
    if not path.exists():
        return 0, 0
    ckpt = load_checkpoint(path)
    return int(ckpt["epoch"]) + 1, int(ckpt["global_step"])


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's contents (tensors and plain containers only: ``weights_only``, never arbitrary pickles).

    Raises
    ------
    UserError
        The file is damaged (truncated by a crash or a full disk before virtualstain wrote atomically).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: damaged checkpoint ({str(exc)[:120]}); pass --fresh to start the run again "
                        "(or delete this file to resume from the previous one)") from None
