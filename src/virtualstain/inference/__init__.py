"""Inference (torch): arrays in, arrays out — input checks, brightness matching, test-time augmentation, tiling."""
