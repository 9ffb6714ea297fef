"""Training throughput (patches/s) of the `pics` network on 128×128 patches, CPU (or --device cuda).

Baseline in the same run: a bare torch loop (forward, MSE, backward, Adam step) on random tensors,
in fp32 and (on CPUs with AVX512-BF16/AMX, or a GPU) under bfloat16 autocast; then the full workflow
(`virtualstain.train`: patch sampling, augmentation, Lightning, validation, checkpointing) on synthetic
data, whose patches/s is reported by the run itself.

    python benchmarks/bench_train.py [--steps 20] [--batch 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX), from /proc/cpuinfo's flags."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


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


def workflow(steps: int, batch: int) -> tuple[float, float]:
    from virtualstain.data.synthetic import write_dataset
    from virtualstain.training.config import config_from_dict
    from virtualstain.workflows.stain.train import train

    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_dataset(f"{tmp}/data", n_fields=4, shape=(256, 256))
        cfg = config_from_dict({"model": {"architecture": "pics"}, "data": {"patch_size": [128, 128]},
                                "training": {"batch_size": batch, "patches_per_epoch": steps * batch,
                                             "max_epochs": 1, "progress_bar": False}})
        t0 = time.perf_counter()
        result = train(manifest, f"{tmp}/run", cfg)
        assert result.summary is not None
        return result.summary.patches_per_second, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(f"pics network, 128x128 patches, batch {args.batch}, device {args.device}, threads {torch.get_num_threads()}")
    bare = bare_loop(args.steps, args.batch, args.device)
    print(f"bare torch loop:       {bare:8.1f} patches/s")
    if args.device != "cpu" or cpu_has_bf16():
        fast = bare_loop(args.steps, args.batch, args.device, bf16=True)
        print(f"bare loop, bf16 autocast: {fast:5.1f} patches/s ({fast / bare:.2f}× fp32; accuracy not measured here)")
    else:
        print("bare loop, bf16 autocast: skipped (this CPU has no AVX512-BF16/AMX)")
    if args.device == "cpu":
        flow, wall = workflow(args.steps, args.batch)
        print(f"virtualstain.train:    {flow:8.1f} patches/s (fit only; whole call {wall:.1f} s incl. data, "
              f"validation, bundle, test)")
        print(f"workflow / bare loop:  {flow / bare:8.2f}")


if __name__ == "__main__":
    main()
