"""The Lightning pieces of training: datasets of patches/regions and the module."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping, Timer
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import Dataset

from ..data.patches import PatchSampler
from ..data.samples import Sample
from ..data.splits import Region
from ..errors import UserError
from ..inference.tiling import pad_to_multiple
from ..models.inference import memory_format, network_config
from .losses import pearson_loss
from .schedule import CosineBudgetSchedule
from .threads import FreeCoreThreads


class PatchDataset(Dataset):
    """``patches_per_epoch`` random patches; item i of epoch e is seeded by (seed, e, i)."""

    def __init__(self, sampler: PatchSampler, length: int, seed: int):
        self.sampler, self.length, self.seed, self.epoch = sampler, length, seed, 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        x, y = self.sampler.sample(rng)
        return torch.from_numpy(x), torch.from_numpy(y)


class RegionDataset(Dataset):
    """Whole validation regions of (normalised) samples, centre-cropped to ``max_size`` input pixels in YX;
    inputs padded to the size multiple, targets at the samples' scale (k× larger for super-resolution)."""

    def __init__(self, samples: Sequence[Sample], regions: Sequence[Region], multiple: Sequence[int], max_size: int):
        self.items = []
        for r in regions:
            x, y = r.crop(samples[r.sample], max_size)
            x, _ = pad_to_multiple(x, multiple)
            self.items.append((np.ascontiguousarray(x), np.ascontiguousarray(y)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        x, y = self.items[i]
        return torch.from_numpy(x), torch.from_numpy(y)


@dataclass(frozen=True)
class EMAUpdate:
    """The update of an exponential moving average of weights, for :class:`torch.optim.swa_utils.AveragedModel`
    (a class, not a closure, so DDP-spawn can pickle it).

    After n updates the average moves towards the weights by 1 − d with d = min(``decay``, (1 + n)/(10 + n)): the
    early average follows the fast-changing weights closely, the later one averages over ≈ 1/(1 − decay) steps.
    Integer buffers (BN's batch counters) take the current value.
    """

    decay: float

    def __call__(self, averaged: torch.Tensor, current: torch.Tensor, n_averaged: torch.Tensor | int) -> torch.Tensor:
        if not averaged.is_floating_point():
            return current
        d = min(self.decay, (1.0 + float(n_averaged)) / (10.0 + float(n_averaged)))
        return averaged + (current - averaged) * (1.0 - d)


class VirtualStainModule(pl.LightningModule):
    """Trains a network with a pixel loss; validates on whole regions (loss and Pearson r).

    Parameters
    ----------
    network : torch.nn.Module
        The network being trained.
    loss_fn : callable
        ``loss_fn(prediction, target)`` → scalar tensor.
    optimizer : {"adam", "adadelta"}
    lr : float
        Learning rate (peak of the cosine schedule).
    betas : (float, float)
        Adam's β₁, β₂.
    lr_schedule : {"cosine", "plateau", "none"}
    schedule : CosineBudgetSchedule, optional
        The cosine schedule's budget (required for ``lr_schedule="cosine"``).
    lr_patience, lr_factor :
        ``plateau``: epochs without a better val_loss, and the factor applied then.
    ema_decay : float, optional
        Keep an exponential moving average of the weights (and BN statistics) with this per-step decay; validation,
        checkpoints' selection and the bundle use it. None: the raw weights.
    threads : FreeCoreThreads, optional
        Re-fits torch's thread count to the free cores at the start of every epoch (CPU training).
    """

    def __init__(self, network: torch.nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 optimizer: str = "adam", lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999),
                 lr_schedule: str = "cosine", schedule: CosineBudgetSchedule | None = None, lr_patience: int = 5,
                 lr_factor: float = 0.5, ema_decay: float | None = None, threads: FreeCoreThreads | None = None):
        super().__init__()
        if lr_schedule == "cosine" and schedule is None:
            raise ValueError("lr_schedule 'cosine' needs its schedule (CosineBudgetSchedule)")
        self.network = network
        self.loss_fn = loss_fn
        self.optimizer_name, self.lr, self.betas = optimizer, lr, tuple(betas)
        self.lr_schedule, self.schedule, self.lr_patience, self.lr_factor = lr_schedule, schedule, lr_patience, lr_factor
        self.ema: AveragedModel | None = None
        if ema_decay is not None:
            self.ema = AveragedModel(network, avg_fn=EMAUpdate(ema_decay), use_buffers=True)
            self.ema.requires_grad_(False)
        self._clock = EpochClock()
        self.threads, self._thread_count = threads, torch.get_num_threads()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.contiguous(memory_format=self._layout))

    @property
    def evaluated_network(self) -> torch.nn.Module:
        """The weights validation judges and the bundle ships: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.network

    def on_fit_start(self) -> None:
        self._layout = memory_format(network_config(self.network).spatial_dims)
        # Module.to accepts memory_format at run time (torch._C._nn._parse_to); torch's overloads omit it.
        self.network.to(memory_format=self._layout)  # type: ignore[call-overload]
        if self.ema is not None:
            self.ema.module.to(memory_format=self._layout)  # type: ignore[call-overload]

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        assert loader is not None  # set by the fit loop before the first epoch starts
        dataset = loader.dataset
        if isinstance(dataset, PatchDataset):
            dataset.epoch = self.current_epoch
        if self.threads is not None:
            self._thread_count = self.threads.update()
        self._clock.start_epoch()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._clock.batch_ready()
        if self.lr_schedule == "cosine":
            assert self.schedule is not None
            factor = self.schedule.factor(self.global_step, _fit_seconds(self.trainer))
            for group in self.optimizers().optimizer.param_groups:  # type: ignore[union-attr]
                group["lr"] = self.lr * factor

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(self(x), y)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.network)
        self._clock.batch_done()

    def on_train_epoch_end(self) -> None:
        data, compute = self._clock.epoch_split()
        optimizer = self.optimizers().optimizer  # type: ignore[union-attr]
        self.log_dict({"data_seconds": data, "step_seconds": compute, "lr": optimizer.param_groups[0]["lr"],
                       "threads": float(self._thread_count)}, on_epoch=True, sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        self._clock.start_validation()

    def validation_step(self, batch, batch_idx):
        x, y = batch
        pred = self.evaluated_network(x.contiguous(memory_format=self._layout))
        pred = pred[(slice(None), slice(None)) + tuple(slice(0, n) for n in y.shape[2:])]
        loss = self.loss_fn(pred, y)
        r = 1.0 - pearson_loss(pred.float(), y.float())
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, batch_size=1, sync_dist=True)
        self.log("val_pearson", r, prog_bar=True, on_epoch=True, batch_size=1, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.log("val_seconds", self._clock.validation_seconds(), on_epoch=True, sync_dist=True)

    def configure_optimizers(self):
        params = self.network.parameters()
        if self.optimizer_name == "adadelta":
            optimizer = torch.optim.Adadelta(params, lr=self.lr)
        else:
            optimizer = torch.optim.Adam(params, lr=self.lr, betas=self.betas)
        if self.lr_schedule != "plateau":  # cosine sets the lr before every step (on_train_batch_start)
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=self.lr_factor,
                                                               patience=self.lr_patience)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}


def deployable_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's weights in a :class:`VirtualStainModule` state dict: the moving average when it was kept."""
    prefix = "ema.module." if any(k.startswith("ema.module.") for k in state_dict) else "network."
    return {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}


def _fit_seconds(trainer: pl.Trainer) -> float:
    """Seconds the fit loop has run, over all resumes (Lightning's Timer, present when a budget is set)."""
    timers = [c for c in trainer.callbacks if isinstance(c, Timer)]  # type: ignore[attr-defined]
    return timers[0].time_elapsed("train") if timers else 0.0


class EpochClock:
    """Where an epoch's wall time goes: waiting for batches (sampling, augmentation), training steps, validation."""

    def __init__(self) -> None:
        self._mark = self._validation_start = time.perf_counter()
        self._data = self._compute = 0.0

    def start_epoch(self) -> None:
        self._mark, self._data, self._compute = time.perf_counter(), 0.0, 0.0

    def batch_ready(self) -> None:
        now = time.perf_counter()
        self._data += now - self._mark
        self._mark = now

    def batch_done(self) -> None:
        now = time.perf_counter()
        self._compute += now - self._mark
        self._mark = now

    def epoch_split(self) -> tuple[float, float]:
        """(seconds waiting for data, seconds in training steps) of the epoch so far."""
        return round(self._data, 3), round(self._compute, 3)

    def start_validation(self) -> None:
        self._validation_start = time.perf_counter()

    def validation_seconds(self) -> float:
        return round(time.perf_counter() - self._validation_start, 3)


class EarlyStoppingAsConfigured(EarlyStopping):
    """Early stopping whose patience is the one configured now, not the one saved in the checkpoint it resumes
    from (Lightning restores the saved patience): raising ``training.early_stopping_patience`` between resumes
    lets a run train on, like raising ``max_epochs``."""

    def load_state_dict(self, state_dict: dict) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience


class AtomicCheckpoints(Checkpoint):
    """After every validation: ``best.ckpt`` (the network's weights, when the validation loss improved) and
    ``last.ckpt`` (the full training state), each written to a temporary name and renamed.

    A run killed at any moment (even ``kill -9``, or a full disk) leaves the previous complete files.
    Lightning runs :class:`~lightning.pytorch.callbacks.Checkpoint` callbacks after the others, so the saved
    state already holds this epoch's early-stopping and learning-rate decisions; resuming from it repeats
    none of them. The best score travels in the checkpoint (:meth:`state_dict`).
    """

    def __init__(self, folder: Path, monitor: str = "val_loss"):
        self.folder, self.monitor = Path(folder), monitor
        self.best_score: float | None = None
        self.best_epoch = -1

    @property
    def last(self) -> Path:
        return self.folder / "last.ckpt"

    @property
    def best(self) -> Path:
        return self.folder / "best.ckpt"

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        value = trainer.callback_metrics.get(self.monitor)
        score = float(value) if value is not None else float("nan")
        if math.isfinite(score) and (self.best_score is None or score < self.best_score):
            self.best_score, self.best_epoch = score, trainer.current_epoch
            if trainer.is_global_zero:
                state = {"state_dict": pl_module.state_dict(), "epoch": trainer.current_epoch, self.monitor: score}
                _replace_atomically(self.best, lambda tmp: torch.save(state, tmp))
        _replace_atomically(self.last, lambda tmp: trainer.save_checkpoint(tmp, weights_only=False),
                            rename=trainer.is_global_zero)  # every rank takes part in saving; rank 0 writes

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_epoch = int(state_dict.get("best_epoch", -1))


def _replace_atomically(path: Path, write: Callable[[Path], object], rename: bool = True) -> None:
    """``write(tmp)`` to ``path.part``, then rename it to ``path``; on failure remove the part and raise a
    :class:`UserError` naming ``path`` (a full disk is the usual cause)."""
    tmp = path.with_name(path.name + ".part")
    try:
        write(tmp)
        if rename:
            os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as RuntimeError("…failed writing…")
        raise UserError(f"{path}: could not save the training state ({str(exc)[:160]}); free disk space, then rerun "
                        "the same command to resume from the last complete epoch") from None
    finally:
        if rename:  # only the writing rank: another rank must not remove the file rank 0 is renaming
            tmp.unlink(missing_ok=True)
