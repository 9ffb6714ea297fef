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


def train_killed_after_first_checkpoint(manifest, run, config_path):
    """Run ``virtualstain train`` in a new process group and ``kill -9`` it 2 s after its first ``last.ckpt``;
    return that checkpoint's path."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-c", "import sys; from virtualstain.cli import main; sys.exit(main(sys.argv[1:]))",
           "train", str(manifest), "--out", str(run), "--config", str(config_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while time.time() < deadline and not last.exists():
        time.sleep(0.2)
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return last
