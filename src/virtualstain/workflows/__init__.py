"""Workflows (torch): training, tiled prediction, evaluation, the demo."""
