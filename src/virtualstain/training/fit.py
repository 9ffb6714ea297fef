"""The Lightning fit loop: resume from the last checkpoint, early stopping, budget, log segments.

``RUN/checkpoints/last.ckpt`` is rewritten atomically after every validation, so a run killed at
any moment (even ``kill -9``) resumes from its last complete epoch when :func:`fit` is called again
with the same run folder and config (:func:`prepare_resume`). Lightning's CSV logger deletes its
file when it starts, so a resumed run keeps earlier log segments aside and joins them at the end.
"""

from __future__ import annotations

import csv
import datetime
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch.utils.data import Dataset

from .._atomic import write_csv_atomic
from ..errors import UserError
from .config import TrainConfig

#: Settings that may change between an interrupted run and its resume: the budget and the display.
RESUMABLE_CHANGES = {"max_minutes", "max_epochs", "progress_bar", "num_workers"}


@dataclass
class FitResult:
    """What one (possibly resumed) session of the fit loop did; rank 0 only."""

    best_val_loss: float | None
    epochs: int
    seconds_this_session: float
    patches_per_second: float
    resumed_from: str | None


def precision(setting: str) -> str:
    """Lightning precision: ``auto`` is bf16-mixed (or 16-mixed) on CUDA, 32-true on CPU."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _comparable(config: dict) -> dict:
    training = {k: v for k, v in config.get("training", {}).items() if k not in RESUMABLE_CHANGES}
    return {**config, "training": training}


def prepare_resume(run: Path, config: TrainConfig, fresh: bool) -> Path | None:
    """The checkpoint to resume from, if ``run`` holds an interrupted run with the same settings.

    The budget (``max_minutes``, ``max_epochs``) and display settings may change between resumes.
    ``fresh`` discards the checkpoints and logs first.

    Raises
    ------
    UserError
        ``run`` holds an interrupted run with another config.
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


def fit(config: TrainConfig, network: torch.nn.Module, train_ds: Dataset, val_ds: Dataset, run: Path,
        resume: Path | None) -> FitResult | None:
    """Run the Lightning loop; load the best weights into ``network``; return what happened (None off rank 0)."""
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
    callbacks: list = [best, AtomicLastCheckpoint(ckpt_dir / "last.ckpt"), LearningRateMonitor(logging_interval="epoch")]
    if t.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=t.early_stopping_patience))
    trainer = pl.Trainer(
        max_epochs=t.max_epochs,
        max_time=datetime.timedelta(minutes=t.max_minutes) if t.max_minutes else None,
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=precision(t.precision),  # type: ignore[arg-type]
        callbacks=callbacks,
        logger=CSVLogger(save_dir=str(run), name="", version="log", flush_logs_every_n_steps=1),
        default_root_dir=str(run),
        enable_progress_bar=t.progress_bar and sys.stderr.isatty(),
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        deterministic=False,
    )
    n_train = len(train_ds)  # type: ignore[arg-type]
    train_loader = DataLoader(train_ds, batch_size=t.batch_size, shuffle=False, num_workers=t.num_workers,
                              drop_last=n_train >= t.batch_size, persistent_workers=t.num_workers > 0)
    val_loader = DataLoader(val_ds, batch_size=1, shuffle=False, num_workers=0)
    steps_before = checkpoint_progress(resume)[1] if resume else 0
    if resume:
        _keep_log_segment(run)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(resume) if resume else None, weights_only=True)
    seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return None
    _merge_log_segments(run)
    best_path = Path(best.best_model_path) if best.best_model_path else ckpt_dir / "last.ckpt"
    state = torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"]
    network.load_state_dict({k.removeprefix("network."): v for k, v in state.items() if k.startswith("network.")})
    score = best.best_model_score
    epochs, steps = checkpoint_progress(ckpt_dir / "last.ckpt")  # also right after DDP-spawn
    return FitResult(
        best_val_loss=float(score) if score is not None else None,
        epochs=epochs,
        seconds_this_session=round(seconds, 1),
        patches_per_second=round((steps - steps_before) * t.batch_size / max(seconds, 1e-9), 2),
        resumed_from=str(resume) if resume else None,
    )


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
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return int(ckpt["epoch"]) + 1, int(ckpt["global_step"])
