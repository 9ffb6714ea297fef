"""Where virtualstain caches derived files (ONNX graphs, backend choices, unpacked Model Zoo packages)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$VIRTUALSTAIN_CACHE`` if set, else ``$XDG_CACHE_HOME/virtualstain``, else ``~/.cache/virtualstain``."""
    if os.environ.get("VIRTUALSTAIN_CACHE"):
        return Path(os.environ["VIRTUALSTAIN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "virtualstain"
