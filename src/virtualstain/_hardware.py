"""What this machine's processor can do, read without importing torch."""

from __future__ import annotations

from pathlib import Path

#: /proc/cpuinfo flags of native bfloat16 arithmetic (x86-64).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU advertises native bfloat16 arithmetic (Linux; False where the flags are unreadable)."""
    try:
        words = set(cpuinfo.read_text(encoding="utf-8", errors="replace").split())
    except OSError:
        return False
    return any(flag in words for flag in BF16_CPU_FLAGS)


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor's model name (``/proc/cpuinfo``, else :func:`platform.processor`, else ``"unknown"``)."""
    import platform

    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
