"""Compute threads for the cores other processes leave free, re-measured every epoch (CPU training).

Two torch threads on two cores, one of them busy with another process, train *slower* than one thread:
each operation waits for the thread that lost its core (measured on this 2-core machine, ``pics`` in
bf16: 40 patches/s idle with 2 threads; with one core busy 9.3 with 2 threads, 21.3 with 1). So before
training and at the start of every epoch the CPU time others used since the last look is read from
``/proc/stat`` (busy time of all cores, ``nice``-d work included, minus this process's own CPU time: a
niced job still takes the core whenever one of our threads waits, and measured here it slowed 2-thread
training as much as an un-niced one), and torch uses ``usable cores − round(others' cores)`` threads, at least one and
never more than it was given. Elsewhere than Linux the thread count is left alone.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

#: Clock ticks per second of /proc/stat (USER_HZ).
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSample:
    """Busy CPU time of the machine and of this process, at one moment (s)."""

    wall: float
    machine_busy: float
    own: float


def sample_cpu(stat: Path = Path("/proc/stat")) -> CpuSample | None:
    """Now's :class:`CpuSample`; None where ``/proc/stat`` is unreadable (not Linux)."""
    try:
        fields = stat.read_text(encoding="ascii").splitlines()[0].split()
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    if fields[0] != "cpu" or len(fields) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    steal = int(fields[8]) if len(fields) > 8 else 0
    return CpuSample(time.monotonic(), (user + nice + system + irq + softirq + steal) / _HZ, time.process_time())


def others_cores(before: CpuSample, after: CpuSample) -> float:
    """Cores' worth of CPU that other (not niced) processes used between two samples."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    return max(0.0, (after.machine_busy - before.machine_busy) - (after.own - before.own)) / wall


def threads_for(usable: int, busy_elsewhere: float) -> int:
    """Threads for the cores left free: ``usable − round(busy_elsewhere)``, at least 1."""
    return max(1, min(usable, usable - round(busy_elsewhere)))


class FreeCoreThreads:
    """Keeps ``torch``'s thread count at the cores other processes leave free (see the module docstring)."""

    def __init__(self, usable: int | None = None):
        self.usable = usable or torch.get_num_threads()
        self._last = sample_cpu()

    def update(self) -> int:
        """Measure others' use since the last call and set the thread count; returns it."""
        now = sample_cpu()
        if now is None or self._last is None:
            return torch.get_num_threads()
        threads = threads_for(self.usable, others_cores(self._last, now))
        self._last = now
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        return threads

    def restore(self) -> None:
        """Back to the thread count training started with."""
        torch.set_num_threads(self.usable)
