"""virtualstain: computational specificity for label-free microscopy.

Learn a virtual stain from paired images, apply it to images of any size, judge it,
and turn it into physical numbers. The top-level functions are loaded lazily so that
``virtualstain.metrics``, ``virtualstain.data``, ``analysis`` and ``optics`` can be used
without importing torch.
"""

from __future__ import annotations

from ._version import __version__

_API = {
    "train": ("virtualstain.workflows.stain.train", "train"),
    "predict": ("virtualstain.inference.predict", "predict"),
    "PredictOptions": ("virtualstain.inference.options", "PredictOptions"),
    "predict_files": ("virtualstain.workflows.stain.predict", "predict_files"),
    "stream": ("virtualstain.inference.streaming", "stream"),
    "watch_folder": ("virtualstain.workflows.stain.watch", "watch_folder"),
    "load_model": ("virtualstain.models.bundle", "load_bundle"),
    "save_model": ("virtualstain.models.bundle", "save_bundle"),
    "evaluate": ("virtualstain.workflows.stain.evaluate", "evaluate_files"),
    "Evaluator": ("virtualstain.evaluation.scoring", "Evaluator"),
    "simulate_pairs": ("virtualstain.workflows.srqpi.simulate", "simulate_pairs"),
    "SimulationSettings": ("virtualstain.workflows.srqpi.simulate", "SimulationSettings"),
    "evaluate_srqpi": ("virtualstain.workflows.srqpi.evaluate", "evaluate_srqpi"),
    "TrainConfig": ("virtualstain.training.config", "TrainConfig"),
    "UserError": ("virtualstain.errors", "UserError"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'virtualstain' has no attribute {name!r}")
