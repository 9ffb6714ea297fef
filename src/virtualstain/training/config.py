"""Training configuration: a pydantic model read from YAML; every value has a default.

Errors name the field to fix, e.g. ``config.yaml: training.lr: Input should be greater
than 0 (got -1)``. Unknown keys are refused, so typos do not pass silently; so are NaN and
infinite numbers in every float field (``lr: .inf`` would train a NaN model). Values set later
(``config.training.max_minutes = …`` from ``--max-minutes``) are validated too, with the same
field-named :class:`~virtualstain.errors.UserError`. :func:`check_hardware` checks the
accelerator and device count against this machine before fitting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..data.io import read_text_utf8
from ..errors import UserError

#: Command-line options that set a config field, and the fix, named in errors about that field.
FLAGS = {"training.max_minutes": ("--max-minutes", "give a positive number of minutes, or leave it out for no budget")}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    #: The section's name in the YAML (``training``…), for errors raised when a field is set later.
    section: ClassVar[str] = ""

    def __setattr__(self, name: str, value) -> None:
        """Validate like loading does, but raise a :class:`UserError` naming the field (and its option)."""
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise UserError(_describe(exc, "", self.section)) from None


class ModelSettings(_Strict):
    """Which network: a registry name plus optional overrides of its preset."""

    section: ClassVar[str] = "model"

    architecture: Literal["pics", "fnet", "unet", "sr_unet", "srcnn", "cgan"] = Field(
        "pics", description="cgan: VirFluoNet's generator, trained adversarially (training.adversarial)")
    spatial_dims: Literal[2, 3] = 2
    depth: int | None = Field(None, ge=1, le=6, description="stride-2 downsamplings (preset if empty)")
    base_width: int | None = Field(None, ge=1, le=256, description="feature maps at level 0 (preset if empty)")
    max_width: int | None = Field(None, ge=1, le=2048)
    residual: bool | None = None
    upsampling: Literal["bilinear", "transposed"] | None = Field(
        None, description="U-Net decoder: bilinear upsampling + 3×3 conv, or a 2×2 transposed conv (preset if empty)")
    downsample_z: bool = Field(True, description="3D only: False keeps Z at full resolution (thin stacks)")


class DataSettings(_Strict):
    """How images become training patches."""

    section: ClassVar[str] = "data"

    input_channels: list[int] | None = Field(None, description="channels/planes of each input file to use")
    input_normalization: Literal["percentile", "zscore", "minmax"] = "percentile"
    input_normalization_scope: Literal["dataset", "image"] = Field(
        "dataset", description="dataset: input statistics fitted on the training regions; image: each field of view "
                               "normalised by its own statistics (same method), in training and prediction")
    target_normalization: Literal["percentile", "zscore", "minmax"] = "percentile"
    percentiles: tuple[float, float] = (1.0, 99.8)
    patch_size: list[int] | None = Field(None, description="(Y, X) or (Z, Y, X); default 128² or 32×64×64")
    min_signal_fraction: float = Field(0.0, ge=0.0, le=1.0, description="skip patches with less target signal")
    augment: bool = True
    intensity_augmentation: bool | Literal["auto"] = Field(
        "auto", description="random gain, offset, gamma, blur and noise on the normalised input patches (see "
                            "data.augmentation); auto: on when the training area is small (training.auto)")
    input_channel_names: list[str] | None = None
    target_channel_names: list[str] | None = None

    @field_validator("patch_size")
    @classmethod
    def _patch_size_positive(cls, value: list[int] | None):
        if value is not None and (not value or any(p < 1 for p in value)):
            raise ValueError(f"each value must be a positive number of pixels, a multiple of the network's size "
                             f"multiple (e.g. [128, 128]); got {value}")
        return value

    @model_validator(mode="after")
    def _percentiles_ordered(self):
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 ≤ low < high ≤ 100, got {list(self.percentiles)}")
        return self


class SplitSettings(_Strict):
    """Automatic splits (used when the manifest has no split column)."""

    section: ClassVar[str] = "split"

    val_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.25, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _leaves_training(self):
        if self.val_fraction + self.test_fraction >= 0.95:
            raise ValueError("val_fraction + test_fraction must leave at least 5 % for training")
        return self


class AdversarialSettings(_Strict):
    """The conditional-GAN part of training (VirFluoNet): a discriminator judges (input, target) pairs and the
    generator's loss becomes ``pixel_weight`` · pixel loss + ``adversarial_weight`` · −log D(input, G(input)) +
    ``weight_l1`` · mean |θ_G| (see :mod:`virtualstain.training.adversarial` for the reading of ‖θ_G‖₁)."""

    section: ClassVar[str] = "training.adversarial"

    discriminator: Literal["paper", "patchgan"] = Field(
        "paper", description="paper: VirFluoNet's (5×5 convs, one score per patch); patchgan: pix2pix's 70×70")
    discriminator_width: int | None = Field(None, ge=1, le=256, description="first layer's maps (paper 32, patchgan 64)")
    discriminator_lr: float = Field(2e-4, gt=0.0, description="Adam learning rate of the discriminator")
    pixel_weight: float = Field(0.99, ge=0.0, description="λ₁ of the pixel loss (training.loss)")
    adversarial_weight: float = Field(0.01, ge=0.0, description="λ₂ of the generator's adversarial loss")
    weight_l1: float = Field(0.001, ge=0.0, description="λ₃ of the generator weights' mean absolute value")


#: What ``model.architecture: cgan`` sets where the config leaves it out: the paper's training (MAE, Adam 2e-4 with
#: β₁ = 0.5 as pix2pix, targets min/max-normalised to the tanh's range, the adversarial loss).
CGAN_DEFAULTS = {"data": {"target_normalization": "minmax"},
                 "training": {"loss": "mae", "lr": 2e-4, "betas": [0.5, 0.999], "adversarial": {}}}


class TrainingSettings(_Strict):
    """The optimisation loop."""

    section: ClassVar[str] = "training"

    loss: Literal["mse", "mae", "pearson", "mae_msssim"] = "mse"
    optimizer: Literal["adam", "adadelta"] = "adam"
    lr: float = Field(1e-3, gt=0.0, description="learning rate (Adadelta: 1.0 is usual)")
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: Literal["cosine", "plateau", "none"] = Field(
        "cosine", description="cosine: linear warm-up, then cosine decay to 0 at the end of the budget (time or "
                              "epochs, whichever ends first); plateau: multiply lr by lr_factor after lr_patience "
                              "epochs without a better val_loss")
    warmup_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="cosine: share of the budget spent warming up")
    ema_decay: float | None = Field(0.998, gt=0.0, lt=1.0, description="exponential moving average of the weights "
                                    "(per step) used for validation, checkpoints and the bundle; null turns it off")
    gradient_clip_norm: float | None = Field(1.0, gt=0.0, description="clip the gradients' global norm; null: off")
    lr_patience: int = Field(5, ge=1)
    lr_factor: float = Field(0.5, gt=0.0, lt=1.0)
    batch_size: int = Field(8, ge=1)
    patches_per_epoch: int | Literal["auto"] = Field(
        "auto", description="auto: chosen from the training area and the budget (printed by train)")
    max_epochs: int | None = Field(None, ge=1, description="null: 50 without a time budget, else until the budget ends")
    max_minutes: float | None = Field(None, gt=0.0, description="wall-clock budget over all resumes")
    early_stopping_patience: int | None = Field(15, ge=1)
    seed: int = 0
    ensemble: int = Field(1, ge=1, le=16, description="train this many networks (seeds seed, seed + 1, …) on the "
                          "same split; the bundle holds all, predict --uncertainty adds their spread to σ; a time "
                          "budget is shared equally among them")
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | Literal["auto"] = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    precision: Literal["auto", "32-true", "16-mixed", "bf16-mixed"] = "auto"
    num_workers: int = Field(0, ge=0)
    val_max_size: int = Field(1024, ge=16, description="validation regions are centre-cropped to this in YX")
    val_max_regions: int = Field(32, ge=1)
    progress_bar: bool = Field(True, description="show a progress bar (on a terminal)")
    foreground_weight: float = Field(0.0, ge=0.0, description="pixels whose target exceeds the channel's Otsu "
                                     "threshold weigh 1 + this in the pixel loss (mse, mae, L1 part of mae_msssim)")
    adversarial: AdversarialSettings | None = Field(
        None, description="train against a discriminator (conditional GAN); model.architecture cgan sets it")

    def epoch_limit(self) -> int:
        """Epochs the run may reach: ``max_epochs``, else 50 without a time budget and unbounded with one."""
        return self.max_epochs or (1_000_000 if self.max_minutes else 50)

    @field_validator("devices")
    @classmethod
    def _devices_positive(cls, value: int | str):
        if isinstance(value, int) and value < 1:
            raise ValueError(f"give a number of devices ≥ 1, or auto (got {value})")
        return value

    @model_validator(mode="after")
    def _betas_in_range(self):
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {list(self.betas)}")
        return self


class TrainConfig(_Strict):
    """Everything ``virtualstain train`` needs beyond the manifest."""

    model: ModelSettings = ModelSettings()
    data: DataSettings = DataSettings()
    split: SplitSettings = SplitSettings()
    training: TrainingSettings = TrainingSettings()

    @model_validator(mode="before")
    @classmethod
    def _cgan_defaults(cls, data):
        """``model.architecture: cgan`` brings the paper's training settings wherever the config is silent."""
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict) or \
                data["model"].get("architecture") != "cgan":
            return data
        data = dict(data)
        for section, values in CGAN_DEFAULTS.items():
            given = data.get(section) or {}
            if isinstance(given, dict):
                data[section] = {**values, **given}
        return data

    @model_validator(mode="after")
    def _adversarial_constraints(self):
        t = self.training
        if t.adversarial is None:
            return self
        if self.model.spatial_dims != 2:
            raise ValueError("training.adversarial: the discriminators are 2D; set model.spatial_dims: 2")
        if t.lr_schedule == "plateau":
            raise ValueError("training.lr_schedule: 'plateau' is not available with training.adversarial (two "
                             "optimizers); use cosine or none")
        if t.optimizer != "adam":
            raise ValueError("training.optimizer: adversarial training uses adam for both networks")
        if t.adversarial.discriminator == "paper" and any(p % 16 for p in self.patch_size()):
            raise ValueError(f"data.patch_size {list(self.patch_size())}: the paper's discriminator needs multiples "
                             "of 16")
        return self

    @model_validator(mode="after")
    def _patch_dims(self):
        p = self.data.patch_size
        if p is not None and len(p) != self.model.spatial_dims:
            raise ValueError(f"data.patch_size has {len(p)} values but model.spatial_dims is {self.model.spatial_dims}; "
                             "give (Y, X) for 2D or (Z, Y, X) for 3D")
        return self

    def patch_size(self) -> tuple[int, ...]:
        if self.data.patch_size:
            return tuple(self.data.patch_size)
        return (128, 128) if self.model.spatial_dims == 2 else (32, 64, 64)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _describe(error: ValidationError, source: str, section: str = "") -> str:
    parts = []
    for e in error.errors()[:3]:
        loc = ".".join(str(x) for x in (section, *e["loc"]) if x != "") or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown setting; check its spelling against docs/architecture.md (configuration)"
        got = e.get("input")
        tail = f" (got {got!r})" if got is not None and e["type"] != "extra_forbidden" and not isinstance(got, dict) else ""
        msg = msg.removeprefix("Value error, ")
        if e["type"] == "value_error":
            tail = ""  # our validators quote the value themselves
        flag, fix = FLAGS.get(loc, ("", ""))
        parts.append(f"{loc}{f' (option {flag})' if flag else ''}: {msg}{tail}{f'; {fix}' if fix else ''}")
    return (f"{source}: " if source else "") + "; ".join(parts)


def config_from_dict(data: dict, source: str = "config") -> TrainConfig:
    """Validate a nested dict; a :class:`UserError` names the field to fix."""
    try:
        return TrainConfig.model_validate(data or {})
    except ValidationError as exc:
        raise UserError(_describe(exc, source)) from None


def load_config(path: str | os.PathLike | None) -> TrainConfig:
    """Read a YAML config (None → all defaults); it must be UTF-8."""
    if path is None:
        return TrainConfig()
    path = Path(path)
    text = read_text_utf8(path, "config", "give a YAML file or leave --config out for defaults")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    if data is not None and not isinstance(data, dict):
        raise UserError(f"{path}: the YAML must be a mapping with sections model/data/split/training")
    return config_from_dict(data or {}, str(path))


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def check_hardware(config: TrainConfig) -> None:
    """Refuse an accelerator this machine lacks, or more devices than it has (before fitting starts).

    ``training.accelerator: gpu``/``cuda`` needs a CUDA GPU, ``mps`` an Apple GPU; ``training.devices`` may not
    exceed the GPUs (on a GPU) or the usable CPU cores (on the CPU: more processes than cores never finish).

    Raises
    ------
    UserError
        Naming the field to change and what this machine has.
    """
    import torch

    t = config.training
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    here = f"this machine has {gpus} CUDA GPU(s)" + (" and an Apple (mps) GPU" if mps else "") + \
        f" and {_usable_cpus()} usable CPU core(s)"
    if t.accelerator in ("gpu", "cuda") and gpus == 0:
        raise UserError(f"training.accelerator: {t.accelerator!r} needs a CUDA GPU, but {here} (torch "
                        f"{torch.__version__}); set training.accelerator: cpu (or auto), or train on a GPU machine")
    if t.accelerator == "mps" and not mps:
        raise UserError(f"training.accelerator: 'mps' needs an Apple GPU, but {here}; set training.accelerator: cpu "
                        "(or auto)")
    if not isinstance(t.devices, int):
        return
    if t.accelerator in ("gpu", "cuda") or (t.accelerator == "auto" and gpus):
        kind, available = "CUDA GPU(s)", gpus
    elif t.accelerator == "mps" or (t.accelerator == "auto" and mps):
        kind, available = "Apple (mps) GPU", 1
    else:
        kind, available = "usable CPU core(s)", _usable_cpus()
    if t.devices > available:
        raise UserError(f"training.devices: {t.devices}, but {here}; set training.devices to at most {available} "
                        f"(the {kind} training would use here), or auto")
