"""The learning-rate schedule fitted to the budget: linear warm-up, then cosine decay to zero.

Training ends at whichever limit comes first, the epochs (``training.max_epochs``) or the wall clock
(``training.max_minutes``), so the schedule follows the *progress* p = max(steps / total steps,
elapsed / budget) ∈ [0, 1]: the learning rate rises linearly over the first ``warmup`` share of the
budget and falls as ½·(1 + cos π·(p − w)/(1 − w)) after it. A model trained on a busy machine therefore
still ends its budget annealed, with fewer steps, instead of being cut mid-schedule. The elapsed time
is the fit loop's (carried across resumes), so a resumed run continues the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CosineBudgetSchedule:
    """Learning-rate factor (of the configured lr) as a function of the progress through the budget.

    Attributes
    ----------
    total_steps : int
        Optimizer steps of the whole run if it reaches ``max_epochs``.
    budget_seconds : float or None
        Wall-clock budget of the fit loop, s (None: steps only).
    warmup : float
        Share of the budget spent warming up, in [0, 1).
    floor : float
        Smallest factor after warm-up (the last steps still learn a little).
    """

    total_steps: int
    budget_seconds: float | None = None
    warmup: float = 0.05
    floor: float = 0.01

    def progress(self, step: int, elapsed_seconds: float = 0.0) -> float:
        """p ∈ [0, 1]: the larger of the step share and the time share of the budget."""
        p = step / max(self.total_steps, 1)
        if self.budget_seconds:
            p = max(p, elapsed_seconds / self.budget_seconds)
        return min(max(p, 0.0), 1.0)

    def factor(self, step: int, elapsed_seconds: float = 0.0) -> float:
        """Multiplier of the learning rate at optimizer step ``step`` after ``elapsed_seconds`` of fitting."""
        p = self.progress(step, elapsed_seconds)
        if self.warmup and p < self.warmup:
            return max(p / self.warmup, self.floor)
        decay = (p - self.warmup) / max(1.0 - self.warmup, 1e-12)
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * decay))
