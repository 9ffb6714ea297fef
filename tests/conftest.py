"""Shared fixtures. Real data comes from one setting: ``--data-dir`` or ``VIRTUALSTAIN_DATA``
(default ``../shared/data`` beside the repository); tests that need it skip when absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption("--data-dir", default=None, help="folder with the shared real data (default ../shared/data)")


@pytest.fixture(scope="session")
def data_dir(request) -> Path:
    value = request.config.getoption("--data-dir") or os.environ.get("VIRTUALSTAIN_DATA") or REPO.parent / "shared" / "data"
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}; set VIRTUALSTAIN_DATA or --data-dir to ../shared/data")
    return path


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


TINY_MODEL = {"architecture": "pics", "depth": 2, "base_width": 4}


@pytest.fixture(scope="session")
def synthetic_manifest(tmp_path_factory) -> Path:
    from virtualstain.data.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("syn"), n_fields=3, shape=(96, 96), seed=3, pixel_size_um=0.5)


def tiny_config(**training):
    from virtualstain.training.config import config_from_dict

    # 4 optimizer steps: no warm-up, or the few steps would barely move the weights
    t = {"max_epochs": 2, "patches_per_epoch": 8, "batch_size": 4, "progress_bar": False, "early_stopping_patience": None,
         "warmup_fraction": 0.0}
    t.update(training)
    return config_from_dict({"model": TINY_MODEL, "data": {"patch_size": [32, 32]}, "training": t})


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synthetic_manifest):
    """A tiny model trained once for the session (seconds on CPU)."""
    from virtualstain.workflows.stain.train import train

    return train(synthetic_manifest, tmp_path_factory.mktemp("run"), tiny_config())
