"""Plate prediction on dask: fields/s in this process and on local clusters of 1 and 2 workers, and the scaling.

Builds a plate of --fields positions (crops of one real field mirrored out to --size² px, a little noise
each), then predicts it with the trained model --model in fresh output plates:

- in this process (``--workers 0``, torch on all cores);
- one dask worker with one torch thread, and one with all cores' threads;
- two dask workers with one torch thread each.

Cluster start-up is included (as a user pays it); the scaling is 1 worker (1 thread) → 2 workers (1 thread
each), and, at equal cores, 1 worker (2 threads) → 2 workers.

    python benchmarks/bench_plate.py --model RUN/model --image FIELD.tif [--fields 16] [--size 512]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--fields", type=int, default=16)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    import tifffile

    import virtualstain.workflows.stain.predict_plate as plate_mod
    from virtualstain.data.io import write_tiff
    from virtualstain.data.ome_zarr import convert_tiffs
    from virtualstain.inference.options import PredictOptions

    tmp = Path(tempfile.mkdtemp(prefix="bench_plate_"))
    field = tifffile.imread(args.image).astype(np.float32)
    field = np.pad(field, [(0, max(0, args.size - n)) for n in field.shape], mode="reflect")[: args.size, : args.size]
    rng = np.random.default_rng(0)
    files = [write_tiff(tmp / f"f_{chr(65 + i // 12)}{i % 12 + 1:02d}.tif",
                        (field + rng.normal(0, 1e-3 * field.std(), field.shape)).astype(np.float32)[None])
             for i in range(args.fields)]
    convert_tiffs(files, tmp / "plate.zarr")
    opts = PredictOptions(backend="torch", precision="fp32")
    cores = os.cpu_count() or 1
    runs = {}
    print(f"{args.fields} fields of {args.size}² px; model {args.model}; {cores} cores; torch fp32")
    for label, workers, threads in [("this process", 0, cores), ("1 worker × 1 thread", 1, 1),
                                    (f"1 worker × {cores} threads", 1, cores), ("2 workers × 1 thread", 2, 1)]:
        t0 = time.perf_counter()
        done = plate_mod.predict_plate(args.model, tmp / "plate.zarr", tmp / f"out_{len(runs)}.zarr", opts,
                                       workers=workers, threads_per_worker=threads, log=lambda line: None)
        seconds = time.perf_counter() - t0
        runs[label] = seconds
        print(f"  {label:<24} {seconds:7.1f} s  {len(done) / seconds:6.2f} fields/s")
    one, two = runs["1 worker × 1 thread"], runs["2 workers × 1 thread"]
    print(f"scaling 1 → 2 workers (1 thread each): {one / two:.2f}× (goal ≥ 1.6); at equal cores "
          f"(1 worker × {cores} threads → 2 × 1): {runs[f'1 worker × {cores} threads'] / two:.2f}×")


if __name__ == "__main__":
    main()
