"""Streaming throughput of ``virtualstain watch``: frames/s and per-stage overlap for a folder of 1024² frames.

Writes --frames copies of one real field (mirrored out to --size² px, a little noise so no two frames are
equal) into a fresh inbox, then runs the watcher once per engine (``--once``: predict what is there and stop),
each in its own subprocess, and prints sustained frames/s, median latency, per-stage seconds per frame and
how long reading, computing and writing overlapped.

    python benchmarks/bench_watch.py --model RUN/model --image FIELD.tif [--size 1024] [--frames 12]
        [--engines auto/auto,torch/fp32,openvino/bf16]

An engine written ``BACKEND/PRECISION/nocheck`` runs without the input check (``watch --no-ood-check``), to
measure what the check costs a stream.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def run_one(model: str, inbox: str, out: str, backend: str, precision: str, check: bool = True) -> dict:
    from virtualstain.inference.options import PredictOptions
    from virtualstain.workflows.stain.watch import WatchSettings, watch_folder

    opts = PredictOptions(backend=backend, precision=precision)
    settings = WatchSettings(poll_s=0.05, settle_s=0.1, once=True, check_domain=check)
    report = watch_folder(model, inbox, out, opts, settings, log=lambda line: print(line, file=sys.stderr))
    frames = report.frames[1:]  # the first frame pays for the engine choice and warm-up
    n = len(frames)
    busy = {k: sum(getattr(f, k)[1] - getattr(f, k)[0] for f in frames) / n for k in ("read", "compute", "write")}
    return {"fps": report.frames_per_second(), "latency": float(np.median([f.latency_s for f in frames])), "busy": busy,
            "overlap": report.overlap_seconds(), "frames": n}  # fps: between the first and the last write


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--engines", default="auto/auto,torch/fp32,openvino/bf16")
    ap.add_argument("--one")
    ap.add_argument("--inbox")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.one:
        backend, precision, *check = args.one.split("/")
        print(json.dumps(run_one(args.model, args.inbox, args.out, backend, precision, check != ["nocheck"])))
        return
    import tifffile

    tmp = Path(tempfile.mkdtemp(prefix="bench_watch_"))
    inbox = tmp / "inbox"
    inbox.mkdir()
    field = tifffile.imread(args.image).astype(np.float32)
    field = np.pad(field, [(0, max(0, args.size - n)) for n in field.shape], mode="reflect")[: args.size, : args.size]
    rng = np.random.default_rng(0)
    for i in range(args.frames):
        tifffile.imwrite(inbox / f"t{i:03d}.tif", field + rng.normal(0, 1e-3 * field.std(), field.shape).astype(np.float32))
    print(f"{args.frames} frames of {args.size}² px from {args.image}; model {args.model}; first frame not counted")
    print(f"{'engine':<18}{'frames/s':>9}{'latency s':>11}{'read':>7}{'compute':>9}{'write':>7}   overlapped (s)")
    for engine in args.engines.split(","):
        out = tmp / f"out_{engine.replace('/', '_')}"
        cmd = [sys.executable, __file__, "--one", engine, "--model", args.model, "--image", args.image,
               "--inbox", str(inbox), "--out", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "VIRTUALSTAIN_CACHE": str(tmp / "cache")})
        if done.returncode != 0:
            print(f"{engine}: failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        chosen = [line for line in done.stderr.splitlines() if line.startswith("backend: ")]
        b = r["busy"]
        print(f"{engine:<18}{r['fps']:>9.2f}{r['latency']:>11.2f}{b['read']:>7.3f}{b['compute']:>9.3f}{b['write']:>7.3f}   "
              + ", ".join(f"{k} {v:.1f}" for k, v in r["overlap"].items())
              + (f"   [{chosen[0].split(' — ')[0]}]" if chosen else ""))


if __name__ == "__main__":
    main()
