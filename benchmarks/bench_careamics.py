"""virtualstain vs CAREamics' CARE at equal work on the same split of ``frm_phase_hoechst`` (issue 13).

Both tools train on the same training region, validate on the same validation region and predict the same
held-out test region, which one scoring code judges (:class:`virtualstain.evaluation.scoring.Evaluator`:
Pearson r, SSIM, nuclei F1 and count error; plus :func:`virtualstain.metrics.nyquist_power_ratio` where it
exists). One row per tool/config and seed, then the mean per tool/config.

Split
    :func:`~virtualstain.data.samples.read_manifest` + :func:`~virtualstain.data.splits.plan_splits` with
    ``TrainConfig()``'s ``split.val_fraction``/``split.test_fraction`` and ``training.seed``, as
    ``virtualstain train`` does (one 512² field: train | val | test from left to right, X 0–307 | 307–384 |
    384–512). Each virtualstain run's ``splits.json`` is checked against it.
Equal work
    128² patches, batch 8, ``--epochs`` × ``--patches-per-epoch`` patches (default 40 × 256 = 10,240 patches,
    1,280 optimizer steps) for every row, no early stopping, no time budget. CAREamics' own patching
    (``stratified``) makes an epoch one pass over the training area — about 10 patches here — so its
    training dataloader is given a sampler that walks CAREamics' own patch indices in fresh random
    permutations, one after another, until ``--patches-per-epoch`` patches (every index is a stratified,
    randomly placed patch of CAREamics' dataset, augmented and normalised by CAREamics), and
    ``num_steps`` (Lightning's ``limit_train_batches``) is set to the same number of batches. Everything
    else is CAREamics' ``CAREamist.train`` unchanged. The optimizer steps taken (``trainer.global_step``) are
    checked after every fit. A CAREamics run that was killed resumes from its ``last.ckpt`` when the same command
    runs again with the same ``--out`` (same total steps; its patch order then differs from an unbroken run's).
Validation
    On the validation region (512 × 77 px) for both, each tool its own way: virtualstain on the whole region,
    CAREamics on fixed random patches of it. CAREamics refuses a validation image smaller than its validation
    patch (by default its 128² training patch) and wants square patches, so its validation patch is 76², the
    largest square of the U-Net's size multiple (4) that fits: 14 patches here. The best checkpoint by
    ``val_loss`` predicts the test region (whole, 512 × 128 px) for both.
Normalisation
    Each tool normalises as it does by default: CAREamics with its ``mean_std`` statistics of the training
    input and target (its prediction comes back in target units), virtualstain with its own
    (``data.input_normalization``/``target_normalization`` of the config). Both are scored in target units.
CAREamics' settings
    ``create_advanced_care_config`` with CARE's defaults (2D ``YX``, U-Net depth 2 / 32 features with batch
    norm, MAE loss, Adam at lr 1e-3, ReduceLROnPlateau, flips + 90° rotations, ``mean_std``, one data worker),
    except: ``seed`` (the row's seed + 1, as CAREamics refuses 0), ``early_stopping_params={}`` (its default
    stops after 3 epochs without a better ``val_loss``, which would not be equal work), the epoch length and
    validation patch above, and no progress bar.
SSIM
    The table's SSIM is virtualstain's (:func:`virtualstain.metrics.ssim`: scikit-image, 7-px window, data
    range = the target's max − min). CAREamics' ``careamics.metrics.avg_ssim`` is the same formula; its value is
    kept in the JSON (``careamics_avg_ssim``) as a check, with MicroSSIM (``micro_ssim``, the ``microssim``
    package CAREamics depends on: background-subtracted, range-invariant, so higher and not comparable).

Run it with the python of a venv that has CAREamics (it sees virtualstain through the system site
packages)::

    python3 -m venv --system-site-packages /tmp/venv-careamics
    printf 'torch==2.13.0\\nlightning==2.6.6\\nnumpy==2.4.6\\npydantic==2.13.4\\n' > /tmp/c.txt
    /tmp/venv-careamics/bin/pip install --no-deps careamics==0.3.5
    /tmp/venv-careamics/bin/pip install -c /tmp/c.txt torchvision==0.28.0 'torchmetrics<1.9' \\
        'bioimageio-core>=0.9,<=0.11' 'microssim<=0.0.5' 'psutil<=7.2.2' 'zarr>=3,<4'
    nice -n 19 /tmp/venv-careamics/bin/python benchmarks/bench_careamics.py            # both tools, seeds 0 1
    nice -n 19 /tmp/venv-careamics/bin/python benchmarks/bench_careamics.py --tools virtualstain \\
        --include /tmp/careamics_results/results.json     # rerun virtualstain only, next to saved CAREamics rows

careamics 0.3.5 declares ``torchvision<=0.26.0``, whose wheels require torch ≤ 2.11; it runs on torch 2.13
with torchvision 0.28.0 (careamics is installed with ``--no-deps`` above, as the resolver refuses it). PyPI's torchvision is
a CUDA build whose operator library cannot load beside the CPU build of torch, and its import then fails
("operator torchvision::nms does not exist"); CAREamics imports torchvision only for its LVAE models, so
this script declares the two operator schemas that import needs (:func:`_torchvision_shim`) before
importing CAREamics. Without CAREamics, ``--tools careamics``/``both`` print one line and exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import glob
import importlib.util
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = ROOT / "examples" / "frm_phase_hoechst" / "manifest.csv"
DEFAULT_CONFIGS = [None, str(ROOT / "benchmarks" / "configs" / "landed_defaults.yaml")]
CHANNEL = "hoechst"  # the target's channel name (its file stem), which selects the nuclei readout


# --------------------------------------------------------------------------------------------------- split
@dataclass
class Split:
    """The train / val / test arrays of the one field, channels first ``(1, Y, X)``, and their bounds."""

    manifest: str
    description: str
    regions: list[dict]
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    pixel_size_um: float | None
    test_name: str


def build_split(manifest: Path) -> Split:
    """The split ``virtualstain train`` makes with ``TrainConfig()``'s split settings and seed."""
    from virtualstain.data.samples import read_manifest
    from virtualstain.data.splits import plan_splits
    from virtualstain.training.config import TrainConfig

    defaults = TrainConfig()
    samples = read_manifest(manifest, defaults.model.spatial_dims, defaults.data.input_channels)
    plan = plan_splits(samples, defaults.split.val_fraction, defaults.split.test_fraction, defaults.training.seed)
    parts = {}
    for split in ("train", "val", "test"):
        regions = plan.of(split)
        if len(regions) != 1:
            raise SystemExit(f"{manifest}: expected one {split} region (one field cut spatially), got {len(regions)}")
        parts[split] = regions[0].crop(samples[regions[0].sample])
    s = samples[plan.of("test")[0].sample]
    if s.input.shape[0] != 1 or s.target.shape[0] != 1:
        raise SystemExit(f"{manifest}: this benchmark compares one input and one target channel (YX)")
    return Split(str(manifest), plan.description, [r.to_dict() for r in plan.regions], parts["train"], parts["val"],
                 parts["test"], s.pixel_size_um, f"{s.name}_test")


# ----------------------------------------------------------------------------------------------- scoring
def score(prediction: np.ndarray, split: Split) -> dict:
    """One test prediction ``(1, Y, X)`` in target units, judged by virtualstain's scoring code."""
    import virtualstain.metrics as vm
    from virtualstain.evaluation.scoring import Evaluator

    x, y = split.test
    prediction = np.asarray(prediction, np.float32).reshape(y.shape)
    evaluator = Evaluator(max_panels=0)
    evaluator.add(f"{split.test_name}.tif", prediction, y, [CHANNEL], inputs=x, pixel_size_um=split.pixel_size_um)
    summary = evaluator.finish().channels[CHANNEL]
    objects = summary.objects
    out = {"pearson_r": summary.pearson_r_mean, "ssim": summary.ssim_mean, "psnr": summary.psnr_mean,
           "nrmse": summary.nrmse_mean,
           "nuclei_f1": objects.f1_mean if objects else math.nan,
           "count_error": objects.count_error_total if objects else math.nan,
           "nuclei_target": objects.count_target_total if objects else None,
           "nuclei_prediction": objects.count_prediction_total if objects else None,
           "baseline_pearson_r": summary.baseline_pearson_r_mean}
    ratio = getattr(vm, "nyquist_power_ratio", None)
    if ratio is not None:
        out["nyquist_ratio"] = float(ratio(prediction, y))
    out.update(_careamics_ssims(prediction, y))
    return out


def _careamics_ssims(prediction: np.ndarray, target: np.ndarray) -> dict:
    """CAREamics' own SSIM (``careamics.metrics.avg_ssim``: skimage SSIM, data range = target max − min) as a
    cross-check of ours, and MicroSSIM (the ``microssim`` package CAREamics ships with), where installed."""
    out = {}
    try:
        from careamics.metrics.metrics import avg_ssim
        out["careamics_avg_ssim"] = float(avg_ssim(target[None, 0], prediction[None, 0])[0])
    except Exception as exc:  # noqa: BLE001 - informative column only
        out["careamics_avg_ssim_error"] = f"{type(exc).__name__}: {exc}"
    try:
        from microssim import micro_structural_similarity
        out["micro_ssim"] = float(micro_structural_similarity(target[0], prediction[0]))
    except Exception as exc:  # noqa: BLE001
        out["micro_ssim_error"] = f"{type(exc).__name__}: {exc}"
    return out


# ------------------------------------------------------------------------------------------------ careamics
def _torchvision_shim() -> str:
    """Let a torchvision whose operator library cannot load (PyPI's CUDA build beside a CPU torch) import.

    torchvision 0.28 registers fake kernels for ``torchvision::nms`` and ``::qnms`` without checking that its
    operators loaded, so ``import torchvision`` (done by CAREamics for its LVAE code, and by torchmetrics)
    raises. Declaring the two schemas first is enough; CARE uses no torchvision operator. Returns what it did.
    """
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return "torchvision absent"
    libraries = glob.glob(str(Path(spec.origin).parent / "_C*.so"))
    try:
        for lib in libraries:
            torch.ops.load_library(lib)
        if libraries:
            return "torchvision operators load"
    except (OSError, RuntimeError):
        pass
    for op in ("nms", "qnms"):
        try:
            torch.library.define(f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:  # already defined
            pass
    return "torchvision operators do not load here: declared torchvision::nms/qnms so that it imports"


def careamics_version() -> tuple[str | None, str]:
    """CAREamics' version (None when it cannot be imported) and a note."""
    if importlib.util.find_spec("careamics") is None:
        return None, "careamics is not installed in this python"
    note = _torchvision_shim()
    try:
        import careamics
    except Exception as exc:  # noqa: BLE001 - reported in one line
        return None, f"careamics does not import here ({type(exc).__name__}: {str(exc).splitlines()[0]}; {note})"
    return careamics.__version__, note


class _CyclingSampler(torch.utils.data.Sampler):
    """``length`` indices of ``range(n)``: fresh random permutations one after another (each CAREamics patch
    index equally often, ±1, like its own shuffled epochs back to back)."""

    def __init__(self, n: int, length: int, seed: int):
        self.n, self.length, self.rng = n, length, np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        out: list[int] = []
        while len(out) < self.length:
            out += self.rng.permutation(self.n).tolist()
        return iter(out[: self.length])


@contextlib.contextmanager
def _epochs_of(patches_per_epoch: int, seed: int, val_patch: list[int]):
    """Within the block, ``CAREamist.train`` builds a datamodule whose training epoch is ``patches_per_epoch``
    patches of CAREamics' own training dataset (see :class:`_CyclingSampler`), and whose validation patches are
    ``val_patch`` (CAREamics refuses validation images smaller than its validation patch, by default its training
    patch, and wants square patches; this split's validation region is 512 × 77 px, so its patches are
    76², the largest square multiple of the U-Net's size multiple, at CAREamics' fixed random positions)."""
    import careamics.careamist as cm
    from careamics.dataset.factory.factory import TrainValData, create_dataset, create_train_dataset
    from torch.utils.data import DataLoader
    from torch.utils.data._utils.collate import default_collate

    base = cm.CareamicsDataModule

    class LongerEpochs(base):  # type: ignore[misc, valid-type]
        def setup(self, stage: str) -> None:
            if stage not in ("fit", "validate") or self.train_dataset is not None:
                return super().setup(stage)
            data = self._data
            assert isinstance(data, TrainValData), "give explicit validation data"
            # as create_train_val_datasets, with the validation patch set (normalisation statistics are fitted
            # on the training data by create_train_dataset and carried over by convert_mode)
            self.train_dataset = create_train_dataset(config=self.config, data=data, loading=self.loading,
                                                      model_constraints=self.model_constraints)
            self.val_dataset = create_dataset(config=self.config.convert_mode("validating", new_patch_size=val_patch),
                                              inputs=data.val_data, targets=data.val_data_target,
                                              loading=self.loading, model_constraints=self.model_constraints)
            self._save_hparams()

        def train_dataloader(self):
            assert self.train_dataset is not None
            params = copy.deepcopy(self.config.train_dataloader_params)
            params.pop("shuffle", None)
            sampler = _CyclingSampler(len(self.train_dataset), patches_per_epoch, seed)
            self.n_patches_careamics_epoch = len(self.train_dataset)
            return DataLoader(self.train_dataset, batch_size=self.batch_size, collate_fn=default_collate,
                              sampler=sampler, **params)

    cm.CareamicsDataModule = LongerEpochs
    try:
        yield
    finally:
        cm.CareamicsDataModule = base


def run_careamics(split: Split, seed: int, args: argparse.Namespace, work: Path) -> dict:
    """Train CAREamics' CARE at equal work, predict the test region, score it."""
    from careamics import CAREamist
    from careamics.config import create_advanced_care_config

    steps_per_epoch = math.ceil(args.patches_per_epoch / args.batch_size)
    config = create_advanced_care_config(
        experiment_name=f"care_seed{seed}", data_type="array", axes="YX",
        patch_size=[args.patch_size, args.patch_size], batch_size=args.batch_size,
        num_epochs=args.epochs, num_steps=steps_per_epoch,
        early_stopping_params={}, trainer_params={"enable_progress_bar": False, "enable_model_summary": False},
        seed=seed + 1)  # CAREamics refuses seed 0 (it must be > 0)
    ckpt_dir = work / "checkpoints" / f"care_seed{seed}_0"
    last = ckpt_dir / f"care_seed{seed}_last.ckpt"
    careamist = CAREamist(config, work_dir=work, enable_progress_bar=False)
    start_step = start_epoch = 0
    if last.exists():  # an interrupted run of this seed: resume it (Lightning restores weights, optimizer, loops)
        state = torch.load(last, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
        start_step, start_epoch = int(state["global_step"]), int(state["epoch"]) + 1
        careamist.trainer.checkpoint_callback.dirpath = os.path.realpath(ckpt_dir)  # keeps its best-k record
        careamist.checkpoint_path = last
        print(f"careamics seed {seed}: resuming {last} (step {start_step}, epoch {start_epoch})", flush=True)
    (x_train, y_train), (x_val, y_val) = split.train, split.val
    started = time.perf_counter()
    multiple = 2 ** int(config.algorithm_config.model.depth)
    side = min(args.patch_size, min(x_val.shape[1:]) // multiple * multiple)  # CAREamics: square, ≤ the image
    val_patch = [side, side]
    with _epochs_of(args.patches_per_epoch, (seed + 1) * 1000 + start_epoch, val_patch):
        careamist.train(train_data=x_train[0], train_data_target=y_train[0], val_data=x_val[0],
                        val_data_target=y_val[0])
    seconds = time.perf_counter() - started
    trainer = careamist.trainer
    steps = int(trainer.global_step)
    expected = args.epochs * steps_per_epoch
    if steps != expected:
        raise SystemExit(f"CAREamics took {steps} optimizer steps, expected {expected} (equal work broken)")
    x_test = split.test[0]
    predictions, _ = careamist.predict(x_test[0], data_type="array", axes="YX", checkpoint="best")
    prediction = np.asarray(predictions[0], np.float32).reshape(split.test[1].shape)
    norm = careamist.config.data_config.normalization.model_dump(mode="json")
    best = careamist.trainer.checkpoint_callback
    return {
        "tool": "careamics", "config": "CARE defaults", "seed": seed, "careamics_seed": seed + 1,
        "train_seconds": round(seconds, 1),
        "patches_per_second": round((steps - start_step) * args.batch_size / seconds, 2),
        "resumed_from_step": start_step or None,
        # a resumed run's seconds cover its last session only: the full run's, at this session's rate
        "train_seconds_full_estimate": round(steps * args.batch_size / ((steps - start_step) * args.batch_size / seconds), 1),
        "optimizer_steps": steps, "epochs": int(trainer.current_epoch),
        "patches_seen": steps * args.batch_size,
        "careamics_val_patch": val_patch,
        "careamics_val_patches": len(careamist.train_datamodule.val_dataset) if careamist.train_datamodule else None,
        "final_lr": float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else None,
        "careamics_patches_per_own_epoch": getattr(careamist.train_datamodule, "n_patches_careamics_epoch", None),
        "best_val_loss": float(best.best_model_score) if best is not None and best.best_model_score is not None
        else None,
        "best_checkpoint": str(best.best_model_path) if best is not None else None,
        "normalization": norm,
        "model": careamist.config.algorithm_config.model.model_dump(mode="json"),
        "loss": str(careamist.config.algorithm_config.loss),
        **score(prediction, split),
    }


# --------------------------------------------------------------------------------------------- virtualstain
def run_virtualstain(split: Split, config_path: str | None, seed: int, args: argparse.Namespace, work: Path) -> dict:
    """Train virtualstain at equal work with one config, predict the test region, score it."""
    from virtualstain.training.config import load_config
    from virtualstain.workflows.stain.train import train

    config = load_config(config_path)
    config.data.patch_size = [args.patch_size, args.patch_size]
    t = config.training
    t.batch_size = args.batch_size
    t.patches_per_epoch = args.patches_per_epoch
    t.max_epochs = args.epochs
    t.early_stopping_patience = None
    t.max_minutes = None
    t.seed = seed
    t.progress_bar = False
    started = time.perf_counter()
    result = train(split.manifest, work, config, fresh=True)
    seconds = time.perf_counter() - started
    summary = result.summary
    assert summary is not None
    regions = json.loads((result.run_dir / "splits.json").read_text(encoding="utf-8"))["regions"]
    if regions != split.regions:
        raise SystemExit(f"virtualstain's split {regions} is not the benchmark's {split.regions}")
    if summary.epochs != args.epochs:
        raise SystemExit(f"virtualstain trained {summary.epochs} epochs, expected {args.epochs} ({summary.stop_reason})")
    (held,) = [h for h in result.held_out]
    return {
        "tool": "virtualstain", "config": Path(config_path).stem if config_path else "defaults", "seed": seed,
        "train_seconds": round(summary.seconds_this_session, 1),
        "patches_per_second": round(summary.patches_per_second, 2),
        "optimizer_steps": args.epochs * math.ceil(args.patches_per_epoch / args.batch_size),
        "epochs": summary.epochs, "patches_seen": args.epochs * args.patches_per_epoch,
        "whole_call_seconds": round(seconds, 1), "stop_reason": summary.stop_reason,
        "best_val_loss": summary.best_val_loss, "config_path": config_path,
        "architecture": config.model.architecture, "loss": config.training.loss,
        **score(held.prediction, split),
    }


# ---------------------------------------------------------------------------------------------------- table
COLUMNS = [("r", "pearson_r", 3), ("SSIM", "ssim", 3), ("nuclei F1", "nuclei_f1", 3),
           ("count error", "count_error", 3), ("Nyquist ratio", "nyquist_ratio", 2),
           ("train s", "train_seconds", 0), ("patches/s", "patches_per_second", 1)]


def _fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def table(rows: list[dict]) -> tuple[str, list[dict]]:
    """The markdown table (rows, then the mean per tool/config) and the means."""
    columns = [c for c in COLUMNS if c[1] != "nyquist_ratio" or any("nyquist_ratio" in r for r in rows)]
    lines = ["| tool / config | seed | " + " | ".join(c[0] for c in columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    for r in rows:
        cells = [_fmt(r.get(key), d) for _, key, d in columns]
        if r.get("resumed_from_step") and r.get("train_seconds_full_estimate"):  # see run_careamics
            cells[[c[1] for c in columns].index("train_seconds")] = f"{r['train_seconds_full_estimate']:.0f}*"
        lines.append(f"| {r['tool']} / {r['config']} | {r['seed']} | " + " | ".join(cells) + " |")
    means = []
    for name in dict.fromkeys((r["tool"], r["config"]) for r in rows):
        group = [r for r in rows if (r["tool"], r["config"]) == name]
        mean = {"tool": name[0], "config": name[1], "seeds": [r["seed"] for r in group]}
        for _, key, _ in columns:
            if key == "train_seconds":
                values = [r.get("train_seconds_full_estimate") if r.get("resumed_from_step") else r.get(key)
                          for r in group]
                values = [v for v in values if isinstance(v, (int, float))]
            else:
                values = [r[key] for r in group if isinstance(r.get(key), (int, float))]
            mean[key] = float(np.mean(values)) if values else math.nan
        means.append(mean)
        lines.append(f"| **{name[0]} / {name[1]}** | mean | "
                     + " | ".join(_fmt(mean[key], d) for _, key, d in columns) + " |")
    if any(r.get("resumed_from_step") for r in rows):
        lines.append("\n\\* resumed after an interruption: the full run's seconds at its last session's patches/s")
    return "\n".join(lines), means


def _clean(value):
    """JSON-safe: NaN/inf as None, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# ----------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    ap.add_argument("--tools", choices=("careamics", "virtualstain", "both"), default="both")
    ap.add_argument("--config", nargs="*", default=None, metavar="YAML",
                    help="virtualstain configs, one row each (named by file stem; 'none' for the library defaults); "
                         "default: the library defaults and benchmarks/configs/landed_defaults.yaml")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--patches-per-epoch", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--patch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--out", default=None, help="folder for results.json/results.md and the runs (default: a temp folder)")
    ap.add_argument("--include", nargs="*", default=[], metavar="JSON",
                    help="results.json of earlier runs whose rows join the table (e.g. saved CAREamics rows)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    tools = ["careamics", "virtualstain"] if args.tools == "both" else [args.tools]
    # imported for the versions and CAREamics' SSIM cross-check even when only virtualstain trains
    cm_version, cm_note = careamics_version()
    if "careamics" in tools and cm_version is None:
        print(f"bench_careamics: skipped: {cm_note} ({sys.executable}); see the docstring for the venv to use")
        return 0
    import virtualstain

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_careamics_"))
    out.mkdir(parents=True, exist_ok=True)
    versions = {"python": platform.python_version(), "torch": torch.__version__, "careamics": cm_version,
                "virtualstain": getattr(virtualstain, "__version__", None), "torch_threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(), "cuda": torch.cuda.is_available(), "careamics_note": cm_note}
    with contextlib.suppress(ImportError):
        import lightning
        versions["lightning"] = lightning.__version__
    with contextlib.suppress(ImportError):
        import torchvision
        versions["torchvision"] = torchvision.__version__
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    split = build_split(Path(args.manifest))
    work = {"epochs": args.epochs, "patches_per_epoch": args.patches_per_epoch, "batch_size": args.batch_size,
            "patch_size": [args.patch_size, args.patch_size],
            "optimizer_steps": args.epochs * math.ceil(args.patches_per_epoch / args.batch_size)}
    print(f"split: {split.description}; regions {[(r['split'], r['bounds']) for r in split.regions]}")
    print(f"equal work: {work}")

    configs = DEFAULT_CONFIGS if args.config is None else [None if c in ("none", "defaults") else c
                                                           for c in args.config]
    rows: list[dict] = []
    for path in args.include:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        if record.get("work") != work or record.get("split", {}).get("regions") != split.regions:
            raise SystemExit(f"{path} was run at other work or on another split ({record.get('work')}); "
                             f"this run's is {work}: rerun it, or give the same --epochs/--patches-per-epoch")
        rows += record["rows"]

    def save() -> str:
        text, means = table(rows)
        record = {"versions": versions, "work": work, "split": {"manifest": split.manifest,
                  "description": split.description, "regions": split.regions}, "rows": rows, "means": means,
                  "scoring": "virtualstain.evaluation.scoring.Evaluator on the test region, target units",
                  "command": " ".join([sys.executable, *sys.argv])}
        (out / "results.json").write_text(json.dumps(_clean(record), indent=2), encoding="utf-8")
        (out / "results.md").write_text(text + "\n", encoding="utf-8")
        return text

    for seed in args.seeds:
        if "careamics" in tools:
            print(f"careamics CARE, seed {seed} ...", flush=True)
            rows.append(run_careamics(split, seed, args, out / f"careamics_seed{seed}"))
            save()
        if "virtualstain" in tools:
            for path in configs:
                name = Path(path).stem if path else "defaults"
                print(f"virtualstain {name}, seed {seed} ...", flush=True)
                rows.append(run_virtualstain(split, path, seed, args, out / f"virtualstain_{name}_seed{seed}"))
                save()
    text = save()
    print()
    print(f"frm_phase_hoechst test region, {work['optimizer_steps']} steps × batch {args.batch_size} of "
          f"{args.patch_size}² patches; torch {versions['torch']}, careamics {cm_version}, "
          f"{versions['torch_threads']} threads")
    print(text)
    print(f"\nwritten: {out / 'results.json'}, {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
