"""Settings chosen from the data, the budget and the machine when the config leaves them on ``auto``.

``train`` prints every choice with its reason and records it in ``RUN/choices.json`` (a resumed run reuses
the recorded choices, so the epochs and the schedule stay the same across resumes).

Patches per epoch (an epoch ends with a validation, a checkpoint and an early-stopping check):

* at least one pass over the training area (training pixels / patch pixels);
* enough training between validations that validating costs ≤ 20 % of the time: a validation pixel costs
  about a third of a training pixel (forward only), so patches ≥ 4/3 · validation pixels / patch pixels;
* with a wall-clock budget, at most throughput × budget / 20, so the budget holds ≥ 20 validations to select
  from (the throughput is measured on a few training steps of this network on this machine first);
* at least 4 batches, and a whole number of batches.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .._atomic import write_text_atomic
from ..data.patches import PatchSampler
from .losses import LOSSES

#: Validations the budget should hold at least (patches per epoch ≤ throughput · budget / this).
MIN_VALIDATIONS = 20
#: Validation's largest share of the epoch time.
MAX_VALIDATION_SHARE = 0.2
#: Cost of a validation pixel (forward) relative to a training pixel (forward, backward, step).
FORWARD_COST = 1 / 3


@dataclass(frozen=True)
class Choice:
    """One setting chosen automatically."""

    setting: str
    value: int | str
    reason: str

    def line(self) -> str:
        return f"{self.setting} = {self.value}: {self.reason}"


def choose_patches_per_epoch(train_pixels: int, val_pixels: int, patch_pixels: int, batch_size: int,
                             patches_per_second: float | None = None, budget_seconds: float | None = None) -> Choice:
    """Patches per epoch from the training and validation areas (pixels) and, with a budget (s), the measured
    training throughput (patches/s); see the module docstring for the rules."""
    area = train_pixels / patch_pixels
    validation = MAX_VALIDATION_SHARE ** -1 * (1 - MAX_VALIDATION_SHARE) * FORWARD_COST * val_pixels / patch_pixels
    wanted = max(area, validation, 4 * batch_size)
    reason = (f"one pass over {train_pixels / 1e6:.2f} Mpx of training area = {area:.0f} patches; validating "
              f"{val_pixels / 1e6:.2f} Mpx stays ≤ {MAX_VALIDATION_SHARE:.0%} of an epoch from {validation:.0f}")
    if budget_seconds and patches_per_second:
        ceiling = patches_per_second * budget_seconds / MIN_VALIDATIONS
        if ceiling < wanted:
            wanted = max(ceiling, 4 * batch_size)
            reason += (f"; capped so the {budget_seconds / 60:.3g}-minute budget at {patches_per_second:.1f} "
                       f"patches/s holds ≥ {MIN_VALIDATIONS} validations")
    value = max(4, math.ceil(wanted / batch_size)) * batch_size
    return Choice("training.patches_per_epoch", int(value), reason)


def measure_patches_per_second(network: torch.nn.Module, sampler: PatchSampler, batch_size: int, precision: str,
                               steps: int = 2, seed: int = 0) -> float:
    """Training throughput (patches/s) of ``network`` on ``sampler``'s patches under Lightning ``precision``:
    forward, MSE and backward on ``steps`` batches after one warm-up batch, sampling included. The network's
    weights and gradients are left as they were."""
    rng = np.random.default_rng(seed)
    bf16 = precision.startswith("bf16")
    state = {k: v.clone() for k, v in network.state_dict().items()}
    network.train()
    elapsed = 0.0
    for i in range(steps + 1):
        started = time.perf_counter()
        pairs = [sampler.sample(rng) for _ in range(batch_size)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs]))
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = LOSSES["mse"](network(x).float(), y)
        loss.backward()
        if i:
            elapsed += time.perf_counter() - started
    network.zero_grad(set_to_none=True)
    network.load_state_dict(state)  # BN statistics moved during the probe
    return steps * batch_size / max(elapsed, 1e-9)


def read_choices(path: Path) -> list[Choice] | None:
    """The choices a run recorded, or None when it recorded none (or the file is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Choice(**c) for c in data]
    except (OSError, ValueError, TypeError):
        return None


def write_choices(path: Path, choices: list[Choice]) -> None:
    write_text_atomic(path, json.dumps([asdict(c) for c in choices], indent=2, ensure_ascii=False))
