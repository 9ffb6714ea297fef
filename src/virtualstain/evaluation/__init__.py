"""Judging predictions against real stains, on arrays (no torch): typed per-image rows and per-channel summaries."""
