"""Values and intervals given on the command line: ``4``, ``1:13``, ``0:0.4:0.1``; ``LOW:HIGH``.

One parser for every flag that takes a list of settings (``simulate --defocus-um``, ``--coherence``,
``defocus-pairs --z-um``), so that they read alike; errors name the flag and say how to write it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import UserError

#: Most values a START:STOP:STEP range may give.
MAX_VALUES = 1000


def parse_values(text: str, flag: str, step: float) -> list[float]:
    """``"4"`` → [4]; ``"1:13"`` → 1, 1+step, …, 13; ``"0:0.4:0.1"`` gives the step explicitly.

    Raises
    ------
    UserError
        Not numbers, NaN/∞, STOP < START, a STEP ≤ 0, or more than :data:`MAX_VALUES` values.
    """
    try:
        parts = [float(p) for p in str(text).split(":")]
    except ValueError:
        raise UserError(f"{flag} {text!r}: give a number, START:STOP or START:STOP:STEP") from None
    if not all(np.isfinite(parts)):
        raise UserError(f"{flag} {text!r}: every value must be a finite number (not nan or inf)")
    if len(parts) == 1:
        return parts
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] <= 0) or parts[1] < parts[0]:
        raise UserError(f"{flag} {text!r}: give START:STOP[:STEP] with STOP ≥ START and a positive STEP")
    start, stop = parts[0], parts[1]
    step = parts[2] if len(parts) == 3 else step
    count = int(np.floor((stop - start) / step + 1e-9)) + 1
    if count > MAX_VALUES:
        raise UserError(f"{flag} {text!r} gives {count} values; at most {MAX_VALUES}: use a larger STEP")
    return [round(start + i * step, 10) for i in range(count)]


def parse_interval(text: str, flag: str) -> tuple[float, float]:
    """``"-2:2"`` → (−2, 2): a closed interval LOW:HIGH with LOW ≤ HIGH.

    Raises
    ------
    UserError
        Not two finite numbers, or LOW > HIGH.
    """
    try:
        parts = [float(p) for p in str(text).split(":")]
    except ValueError:
        parts = []
    if len(parts) != 2 or not all(np.isfinite(parts)) or parts[0] > parts[1]:
        raise UserError(f"{flag} {text!r}: give LOW:HIGH, two finite numbers with LOW ≤ HIGH (e.g. {flag} -2:2)")
    return parts[0], parts[1]


def drop_inside(values: Sequence[float], interval: tuple[float, float] | None) -> list[float]:
    """``values`` without those in the closed ``interval`` [LOW, HIGH] (all of them when it is None)."""
    if interval is None:
        return list(values)
    low, high = interval
    return [v for v in values if not low <= v <= high]
