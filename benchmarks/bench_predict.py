"""Prediction speed and accuracy of every inference backend × precision on one large image, in one run.

Each engine runs in its own subprocess (its own memory and thread pools), on the whole image and tiled
(tiles from the default 1 GB budget), through ``virtualstain.predict`` (normalisation, mirror border,
de-normalisation included). Printed per engine: seconds (best of --repeats after a warm-up), Mpx/s, the
ratio to today's path (torch fp32) measured in the same run, and the largest deviation from the torch fp32
whole-image prediction as a fraction of its range. With --run RUN (a training run folder) the test-region
Pearson r of each engine is printed next to the reference's.

    python benchmarks/bench_predict.py --model RUN/model [--image FIELD.tif] [--size 2048] [--repeats 2]
        [--run RUN] [--device cpu]
    python benchmarks/bench_predict.py --preset sr_unet --scale 4 --shape 490x647     # DL-SRQPI's 4× network

Without --model a preset `pics` with random weights is used (deviations are then not those of a trained
model); without --image a random field is used.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _bundle(model: str | None, preset: str = "pics", scale: int = 1):
    import torch

    import virtualstain as vs
    from virtualstain.data.normalization import Normalizer
    from virtualstain.models.bundle import ModelBundle
    from virtualstain.models.registry import build, make_config

    if model:
        return vs.load_model(model)
    torch.manual_seed(0)
    net = build(preset, make_config(preset, 1, 1, 2, **({"scale": scale} if scale > 1 else {}))).eval()
    return ModelBundle(net, preset, Normalizer("zscore", [0.0], [1.0]), Normalizer("zscore", [0.0], [1.0]), ["in"], ["out"])


def _image(path: str | None, shape: tuple[int, int]) -> np.ndarray:
    if path:
        import tifffile

        field = tifffile.imread(path).astype(np.float32)
        pads = [(0, max(0, n - m)) for n, m in zip(shape, field.shape)]
        return np.pad(field, pads, mode="reflect")[None, :shape[0], :shape[1]]  # real content, mirrored out
    return np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)


def _shape(args) -> tuple[int, int]:
    if args.shape:
        h, w = (int(v) for v in args.shape.lower().split("x"))
        return h, w
    return args.size, args.size


def run_one(args) -> dict:
    from virtualstain.inference.predict import predict

    bundle = _bundle(args.model, args.preset, args.scale)
    image = _image(args.image, _shape(args))
    kw = dict(backend=args.backend, precision=args.precision, device=args.device, tile_size=0 if args.layout == "whole"
              else None)
    out = predict(bundle, image, **kw)  # warm-up: export, compilation
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = predict(bundle, image, **kw)
        times.append(time.perf_counter() - t0)
    np.save(args.save, out)
    result = {"seconds": min(times), "spread": max(times) - min(times)}
    if args.run:
        result["test_r"] = _test_r(bundle, Path(args.run), kw)
    return result


def _test_r(bundle, run: Path, kw: dict) -> float:
    """Mean Pearson r over the run's test regions (RUN/test/input → RUN/test/target), first output channel."""
    from virtualstain.data.samples import load_input
    from virtualstain.inference.predict import predict

    rs = []
    for path in sorted((run / "test" / "input").glob("*.tif")):
        image, _ = load_input(path, 2, None, bundle.input_channel_names)
        target, _ = load_input(run / "test" / "target" / path.name, 2, None, None)
        pred = predict(bundle, image, **{**kw, "tile_size": 0})
        rs.append(float(np.corrcoef(pred[0].ravel(), target[0].ravel())[0, 1]))
    return float(np.mean(rs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--image")
    ap.add_argument("--run")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--shape", help="HxW instead of --size² (e.g. 490x647 for the super-resolution benchmark)")
    ap.add_argument("--preset", default="pics", help="architecture of the random-weight model without --model")
    ap.add_argument("--scale", type=int, default=1, help="super-resolution factor of the random-weight preset")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--backend")
    ap.add_argument("--precision")
    ap.add_argument("--layout")
    ap.add_argument("--save")
    args = ap.parse_args()
    if args.backend:
        print(json.dumps(run_one(args)))
        return
    import torch

    from virtualstain.inference.engines import candidate_specs

    specs = [(s.backend, s.precision) for s in candidate_specs(torch.device(args.device))] + [("auto", "auto")]
    h, w = _shape(args)
    print(f"model {args.model or f'{args.preset} preset (scale {args.scale}), random weights'}; image "
          f"{args.image or 'random'} at {h}×{w} px; "
          f"device {args.device}; torch threads {torch.get_num_threads()}; best of {args.repeats} after a warm-up")
    tmp = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    rows = []
    for backend, precision in specs:
        for layout in ("whole", "tiled"):
            save = tmp / f"{backend}_{precision}_{layout}.npy"
            cmd = [sys.executable, __file__, "--backend", backend, "--precision", precision, "--layout", layout,
                   "--save", str(save), "--size", str(args.size), "--device", args.device, "--repeats", str(args.repeats),
                   "--preset", args.preset, "--scale", str(args.scale)]
            for flag in ("model", "image", "run", "shape"):
                if getattr(args, flag):
                    cmd += [f"--{flag}", getattr(args, flag)]
            done = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ,
                                                                            "VIRTUALSTAIN_CACHE": str(tmp / "cache")})
            if done.returncode != 0:
                print(f"{backend} {precision} {layout}: failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            rows.append((backend, precision, layout, json.loads(done.stdout.strip().splitlines()[-1]), save))
    reference = np.load(tmp / "torch_fp32_whole.npy")
    span = float(reference.max() - reference.min())
    base = next(r["seconds"] for b, p, lay, r, _ in rows if (b, p, lay) == ("torch", "fp32", "whole"))
    base_r = next((r.get("test_r") for b, p, lay, r, _ in rows if (b, p, lay) == ("torch", "fp32", "whole")), None)
    mpx = h * w / 1e6  # input megapixels
    print(f"{'engine':<24}{'layout':<7}{'seconds':>9}{'spread':>8}{'Mpx/s':>8}{'vs torch fp32':>15}{'max dev':>10}"
          + (f"{'test r':>9}{'Δr':>9}" if base_r is not None else ""))
    whole_seconds = {}
    for backend, precision, layout, r, save in rows:
        dev = float(np.abs(np.load(save) - reference).max() / span)
        whole_seconds.setdefault((backend, precision), r["seconds"])
        line = (f"{backend + ' ' + precision:<24}{layout:<7}{r['seconds']:>9.2f}{r['spread']:>8.2f}{mpx / r['seconds']:>8.2f}"
                f"{base / r['seconds']:>14.2f}×{dev:>10.1e}")
        if base_r is not None:
            line += f"{r['test_r']:>9.4f}{r['test_r'] - base_r:>+9.4f}"
        if layout == "tiled":
            line += f"   tiled/whole {r['seconds'] / whole_seconds[(backend, precision)]:.2f}"
        print(line)
    print("auto = what `predict --backend auto` chose in its own process (the choice is printed by `predict --explain`)")


if __name__ == "__main__":
    main()
