"""Image metrics (numpy only; no torch)."""

from .correlation import pearson_r

__all__ = ["pearson_r"]
