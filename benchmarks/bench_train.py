"""Training throughput (patches/s) of the `pics` network on 128×128 patches, CPU (or --device cuda).

Baseline in the same run: a bare torch loop (forward, MSE, backward, Adam step) on random tensors,
in fp32 and (on CPUs with AVX512-BF16/AMX, or a GPU) under bfloat16 autocast; then the full workflow
(`virtualstain.train`: patch sampling, augmentation, Lightning, EMA, validation, checkpointing) on
synthetic data in fp32 and in bf16, whose patches/s and time split (waiting for patches vs training
steps, from ``log/metrics.csv``) the runs report themselves. ``--accuracy DATA_DIR`` adds the accuracy
effect: `frm_phase_hoechst` trained at equal work (``--accuracy-epochs`` × 256 patches) in fp32 and in
bf16, test r of each. Repeats (``--repeats``) give the spread.

    python benchmarks/bench_train.py [--steps 20] [--batch 8] [--repeats 3] [--accuracy ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def bare_loop(steps: int, batch: int, device: str, bf16: bool = False) -> float:
    """Patches/s of forward, MSE, backward and Adam on random tensors; ``bf16``: under bfloat16 autocast."""
    from virtualstain.models.registry import build, make_config

    torch.manual_seed(0)

    net = build("pics", make_config("pics", 1, 2)).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.999))
    x = torch.randn(batch, 1, 128, 128, device=device)
    y = torch.randn(batch, 2, 128, 128, device=device)
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        opt.zero_grad()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.mse_loss(net(x).float(), y)
        loss.backward()
        opt.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def _time_split(run: Path) -> tuple[float, float]:
    """Seconds waiting for patches and in training steps, summed over the epochs of ``run/log/metrics.csv``."""
    data = step = 0.0
    with open(run / "log" / "metrics.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            data += float(row.get("data_seconds") or 0)
            step += float(row.get("step_seconds") or 0)
    return data, step


def workflow(steps: int, batch: int, precision: str) -> tuple[float, float, float]:
    """(patches/s of the fit loop, share of its time waiting for patches, wall s of the whole call)."""
    from virtualstain.data.synthetic import write_dataset
    from virtualstain.training.config import config_from_dict
    from virtualstain.workflows.stain.train import train

    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_dataset(f"{tmp}/data", n_fields=4, shape=(256, 256))
        cfg = config_from_dict({"model": {"architecture": "pics"}, "data": {"patch_size": [128, 128]},
                                "training": {"batch_size": batch, "patches_per_epoch": steps * batch,
                                             "max_epochs": 1, "progress_bar": False, "precision": precision}})
        t0 = time.perf_counter()
        result = train(manifest, f"{tmp}/run", cfg)
        assert result.summary is not None
        data, step = _time_split(Path(tmp) / "run")
        return result.summary.patches_per_second, data / max(data + step, 1e-9), time.perf_counter() - t0


def accuracy(data_dir: Path, precision: str, epochs: int, seed: int = 0) -> tuple[float, float]:
    """(test r, fit seconds) of `frm_phase_hoechst` trained for ``epochs`` × 256 patches under ``precision``."""
    from virtualstain.training.config import config_from_dict
    from virtualstain.workflows.stain.train import train

    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "frm.csv"
        frm = (data_dir / "frm_phase_hoechst").resolve()
        manifest.write_text(f"input,target\n{frm}/phase.tif,{frm}/hoechst.tif\n")
        cfg = config_from_dict({"training": {"patches_per_epoch": 256, "max_epochs": epochs, "seed": seed,
                                             "early_stopping_patience": None, "progress_bar": False,
                                             "precision": precision}})
        result = train(manifest, f"{tmp}/run", cfg)
        assert result.summary is not None
        return float(np.mean(list(result.summary.test_pearson_r.values()))), result.summary.seconds_this_session


def _spread(values: list[float]) -> str:
    return f"{np.median(values):8.1f} (min {min(values):.1f}, max {max(values):.1f}, n {len(values)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--accuracy", type=Path, help="shared data folder: also train frm_phase_hoechst fp32 vs bf16")
    ap.add_argument("--accuracy-epochs", type=int, default=10)
    args = ap.parse_args()
    from virtualstain.training.precision import cpu_has_native_bf16

    bf16 = args.device != "cpu" or cpu_has_native_bf16()
    print(f"pics network, 128x128 patches, batch {args.batch}, device {args.device}, threads {torch.get_num_threads()}, "
          f"native bf16: {bf16}")
    bare = [bare_loop(args.steps, args.batch, args.device) for _ in range(args.repeats)]
    print(f"bare torch loop, fp32:          {_spread(bare)} patches/s")
    if bf16:
        fast = [bare_loop(args.steps, args.batch, args.device, bf16=True) for _ in range(args.repeats)]
        print(f"bare torch loop, bf16 autocast: {_spread(fast)} patches/s "
              f"({np.median(fast) / np.median(bare):.2f}× fp32)")
    else:
        print("bare loop, bf16 autocast: skipped (no native bfloat16 here)")
    if args.device != "cpu":
        return
    precisions = ["32-true"] + (["bf16-mixed"] if bf16 else [])
    flows = {p: [workflow(args.steps, args.batch, p) for _ in range(args.repeats)] for p in precisions}
    for p, runs in flows.items():
        rate = [r[0] for r in runs]
        print(f"virtualstain.train, {p:10s}: {_spread(rate)} patches/s (fit loop; waiting for patches "
              f"{100 * np.median([r[1] for r in runs]):.1f} % of it; whole call {np.median([r[2] for r in runs]):.1f} s "
              f"incl. data, validation, bundle, test); {np.median(rate) / np.median(bare):.2f}× the fp32 bare loop")
    if bf16:
        ratio = np.median([r[0] for r in flows["bf16-mixed"]]) / np.median([r[0] for r in flows["32-true"]])
        print(f"virtualstain.train bf16 / fp32: {ratio:.2f}×")
    if args.accuracy:
        for p in precisions:
            r, seconds = accuracy(args.accuracy, p, args.accuracy_epochs)
            print(f"frm_phase_hoechst, {args.accuracy_epochs} × 256 patches, {p:10s}: test r {r:.4f} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
