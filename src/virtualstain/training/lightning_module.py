"""The Lightning pieces of training: datasets of patches/regions and the module."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping
from torch.utils.data import Dataset

from ..data.patches import PatchSampler
from ..data.samples import Sample
from ..data.splits import Region
from ..errors import UserError
from ..inference.tiling import pad_to_multiple
from ..models.inference import memory_format, network_config
from .losses import LOSSES, pearson_loss


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


class VirtualStainModule(pl.LightningModule):
    """Trains a network with a pixel loss; validates on whole regions (loss and Pearson r)."""

    def __init__(self, network: torch.nn.Module, loss: str = "mse", optimizer: str = "adam", lr: float = 1e-3,
                 betas: Sequence[float] = (0.5, 0.999), lr_schedule: str = "plateau", lr_patience: int = 5,
                 lr_factor: float = 0.5):
        super().__init__()
        self.network = network
        self.loss_name, self.loss_fn = loss, LOSSES[loss]
        self.optimizer_name, self.lr, self.betas = optimizer, lr, tuple(betas)
        self.lr_schedule, self.lr_patience, self.lr_factor = lr_schedule, lr_patience, lr_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.contiguous(memory_format=self._layout))

    def on_fit_start(self) -> None:
        self._layout = memory_format(network_config(self.network).spatial_dims)
        # Module.to accepts memory_format at run time (torch._C._nn._parse_to); torch's overloads omit it.
        self.network.to(memory_format=self._layout)  # type: ignore[call-overload]

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        assert loader is not None  # set by the fit loop before the first epoch starts
        dataset = loader.dataset
        if isinstance(dataset, PatchDataset):
            dataset.epoch = self.current_epoch

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(self(x), y)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        pred = self(x)[(slice(None), slice(None)) + tuple(slice(0, n) for n in y.shape[2:])]
        loss = self.loss_fn(pred, y)
        r = 1.0 - pearson_loss(pred.float(), y.float())
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, batch_size=1, sync_dist=True)
        self.log("val_pearson", r, prog_bar=True, on_epoch=True, batch_size=1, sync_dist=True)

    def configure_optimizers(self):
        if self.optimizer_name == "adadelta":
            optimizer = torch.optim.Adadelta(self.parameters(), lr=self.lr)
        else:
            optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, betas=self.betas)
        if self.lr_schedule == "none":
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=self.lr_factor,
                                                               patience=self.lr_patience)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}


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
