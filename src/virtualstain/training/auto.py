"""Settings chosen from the data, the budget and the machine when the config leaves them on ``auto``.

``train`` prints every choice with its reason and records it in ``RUN/choices.json`` (a resumed run reuses
the recorded choices, so the epochs and the schedule stay the same across resumes).

Patches per epoch (an epoch ends with a validation, a checkpoint and an early-stopping check):

* one pass over the training area (training pixels / patch pixels) ...
* ... but with a wall-clock budget at most throughput × budget / 20, so the budget holds ≥ 20 validations
  to select from;
* and never so few that validating takes more than 20 % of the time, nor fewer than 16 batches (the
  checkpoints written after every validation then stay a small share too).

Intensity augmentation (``data.intensity_augmentation: auto``): on when the training area holds fewer than
:data:`SMALL_TRAINING_PATCHES` patches, where a network sees the same few pixels many times over and learns their
exact grey levels (the robustness study of issue 13: +0.30 test r on a 16-patch field of another microscope,
+0.017 on a 10-patch field; −0.025 on a 50-patch field, where it only slows learning).

Throughput and the time of one validation are measured on this network and machine first, on a few
training batches and on the validation regions (:func:`measure_throughput`, a few seconds); where several
processes train together (DDP) they are estimated from pixel counts instead, so that every rank agrees.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .._atomic import write_text_atomic
from ..data.patches import PatchSampler
from ..models.inference import memory_format, network_config
from .losses import LOSSES

#: Validations the budget should hold at least (patches per epoch ≤ throughput · budget / this).
MIN_VALIDATIONS = 20
#: Validation's largest share of the epoch time.
MAX_VALIDATION_SHARE = 0.2
#: Fewest batches per epoch.
MIN_BATCHES = 16
#: Below this many patches of training area, ``intensity_augmentation: auto`` turns the augmentation on.
SMALL_TRAINING_PATCHES = 32
#: Cost of a validation pixel (forward) relative to a training pixel (forward, backward, step), when not measured.
FORWARD_COST = 1 / 3


@dataclass(frozen=True)
class Choice:
    """One setting chosen automatically."""

    setting: str
    value: int | str
    reason: str

    def line(self) -> str:
        return f"{self.setting} = {self.value}: {self.reason}"


@dataclass(frozen=True)
class Throughput:
    """Measured speed of this network on this machine.

    Attributes
    ----------
    patches_per_second : float
        Training patches per second (forward, loss, backward; sampling included).
    validation_seconds : float
        One pass over the validation regions, s.
    """

    patches_per_second: float
    validation_seconds: float


def choose_patches_per_epoch(train_pixels: int, val_pixels: int, patch_pixels: int, batch_size: int,
                             throughput: Throughput | None = None, budget_seconds: float | None = None) -> Choice:
    """Patches per epoch from the training and validation areas (pixels), the measured ``throughput`` and the
    budget (s); see the module docstring for the rules."""
    area = train_pixels / patch_pixels
    keep = (1 - MAX_VALIDATION_SHARE) / MAX_VALIDATION_SHARE
    if throughput:
        validation = keep * throughput.validation_seconds * throughput.patches_per_second
        cost = f"a validation takes {throughput.validation_seconds:.1f} s at {throughput.patches_per_second:.1f} patches/s"
    else:
        validation = keep * FORWARD_COST * val_pixels / patch_pixels
        cost = f"validating {val_pixels / 1e6:.2f} Mpx (estimated)"
    floor = max(validation, MIN_BATCHES * batch_size)
    wanted = max(area, floor)
    reason = (f"one pass over {train_pixels / 1e6:.2f} Mpx of training area = {area:.0f} patches; {cost}, so "
              f"≥ {validation:.0f} keep it ≤ {MAX_VALIDATION_SHARE:.0%} of the time; ≥ {MIN_BATCHES} batches")
    if budget_seconds and throughput:
        ceiling = throughput.patches_per_second * budget_seconds / MIN_VALIDATIONS
        if ceiling < wanted:
            wanted = max(ceiling, floor)
            reason += f"; ≤ {ceiling:.0f} so the {budget_seconds / 60:.3g}-minute budget holds ≥ {MIN_VALIDATIONS} validations"
    value = math.ceil(wanted / batch_size) * batch_size
    return Choice("training.patches_per_epoch", int(value), reason)


def choose_intensity_augmentation(setting: bool | str, train_pixels: int, patch_pixels: int) -> Choice:
    """Intensity augmentation on or off: as configured, or (``auto``) on for small training areas (pixels)."""
    if setting != "auto":
        return Choice("data.intensity_augmentation", "on" if setting else "off", "as configured")
    area = train_pixels / patch_pixels
    on = area < SMALL_TRAINING_PATCHES
    why = "a small set, whose grey levels a network learns by heart" if on else "enough variety"
    return Choice("data.intensity_augmentation", "on" if on else "off",
                  f"the training area holds {area:.0f} patches, {'fewer' if on else 'not fewer'} than "
                  f"{SMALL_TRAINING_PATCHES}: {why}")


def measure_throughput(network: torch.nn.Module, sampler: PatchSampler, validation: Sequence[tuple[torch.Tensor,
                       torch.Tensor]], batch_size: int, precision: str, steps: int = 3, seed: int = 0) -> Throughput:
    """Time ``steps`` training batches (after two warm-up batches) and one validation pass of ``network`` under
    Lightning ``precision``, on the CPU, channels-last as the fit loop runs it. Weights, BN statistics and
    gradients are left as they were."""
    rng = np.random.default_rng(seed)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    layout = memory_format(network_config(network).spatial_dims)
    state = {k: v.clone() for k, v in network.state_dict().items()}
    network.to(memory_format=layout)  # type: ignore[call-overload]
    network.train()
    elapsed = 0.0
    for i in range(steps + 2):
        started = time.perf_counter()
        pairs = [sampler.sample(rng) for _ in range(batch_size)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])).contiguous(memory_format=layout)
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))
        with autocast:
            loss = LOSSES["mse"](network(x).float(), y)
        loss.backward()
        if i >= 2:
            elapsed += time.perf_counter() - started
    network.zero_grad(set_to_none=True)
    network.eval()
    started = time.perf_counter()
    with torch.no_grad(), autocast:
        for x, _ in validation:
            network(x[None].contiguous(memory_format=layout))
    validation_seconds = time.perf_counter() - started
    network.load_state_dict(state)
    network.train()
    return Throughput(steps * batch_size / max(elapsed, 1e-9), validation_seconds)


def read_choices(path: Path) -> list[Choice] | None:
    """The choices a run recorded, or None when it recorded none (or the file is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Choice(**c) for c in data]
    except (OSError, ValueError, TypeError):
        return None


def write_choices(path: Path, choices: list[Choice]) -> None:
    write_text_atomic(path, json.dumps([asdict(c) for c in choices], indent=2, ensure_ascii=False))
