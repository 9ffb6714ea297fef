"""Which arithmetic training uses: bfloat16 autocast where the hardware computes it natively, else fp32.

On a CPU, bf16 autocast pays only with native bf16 instructions (AVX512-BF16 or AMX): measured 1.7–1.9×
the fp32 patches/s for ``pics`` (``benchmarks/bench_train.py``); without them torch emulates bf16 and it is
slower than fp32. On CUDA GPUs bf16 is used where supported, fp16 (with loss scaling) otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._hardware import cpu_has_native_bf16


@dataclass(frozen=True)
class PrecisionChoice:
    """A Lightning ``precision`` value and why it was chosen (printed by ``train``)."""

    lightning: str
    reason: str


def choose_precision(setting: str, accelerator: str = "auto") -> PrecisionChoice:
    """Resolve ``training.precision``: ``auto`` is bf16-mixed (or 16-mixed) on CUDA, bf16-mixed on a CPU with
    native bf16 arithmetic, else 32-true; any other value is kept."""
    if setting != "auto":
        return PrecisionChoice(setting, "as configured (training.precision)")
    on_gpu = torch.cuda.is_available() and accelerator not in ("cpu", "mps")
    if on_gpu:
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16-mixed", "bf16 autocast: this CUDA GPU supports bfloat16")
        return PrecisionChoice("16-mixed", "fp16 autocast with loss scaling: this CUDA GPU lacks bfloat16")
    if accelerator in ("auto", "cpu") and cpu_has_native_bf16():
        return PrecisionChoice("bf16-mixed", "bf16 autocast: this CPU has native bfloat16 (AVX512-BF16/AMX)")
    return PrecisionChoice("32-true", "fp32: no native bfloat16 on this processor")
