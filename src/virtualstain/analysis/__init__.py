"""Biological readouts (numpy / scipy / scikit-image only; no torch): segmentation and object matching."""

from .matching import MatchResult, match_objects
from .segmentation import segment_nuclei

__all__ = ["MatchResult", "match_objects", "segment_nuclei"]
