"""Prediction speed of the `pics` network on one 2048×2048 image, CPU (or --device cuda).

Measured in one run, each method in its own subprocess (so peak memory is its own):
the plain torch module on the whole image (reference), then the network as `predict` runs it
(batch norm folded, channels-last) on the whole image, tiled crop-and-stitch (tile from the
default memory budget), and FRM's sliding window (256 px windows, stride 64, 32 px border
dropped, overlaps averaged).
Prints Mpx/s, peak resident memory, and ratios against the whole-image baseline.

    python benchmarks/bench_predict.py [--size 2048] [--device cpu] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def _network(device, prepared: bool = True):
    """The pics network as `virtualstain predict` runs it (folded BN, channels-last), or plain torch."""
    from virtualstain.models.inference import prepare_for_inference
    from virtualstain.models.registry import build, make_config

    torch.manual_seed(0)
    net = build("pics", make_config("pics", 1, 1)).eval()
    return prepare_for_inference(net, device) if prepared else net.to(device)


def frm_sliding_window(net, image: np.ndarray, device, window=256, stride=64, border=32, batch=16) -> np.ndarray:
    """FRM-style prediction: overlapping windows, border excluded, averaged."""
    _, h, w = image.shape
    acc = np.zeros((1, h, w), np.float64)
    cnt = np.zeros((h, w), np.float64)
    starts_y = list(range(0, h - window + 1, stride))
    starts_x = list(range(0, w - window + 1, stride))
    coords = [(y, x) for y in starts_y for x in starts_x]
    with torch.inference_mode():
        for i in range(0, len(coords), batch):
            chunk = coords[i:i + batch]
            x = torch.from_numpy(np.stack([image[:, y:y + window, x0:x0 + window] for y, x0 in chunk])).to(device)
            out = net(x).float().cpu().numpy()
            for (y, x0), o in zip(chunk, out):
                y0 = border if y > 0 else 0
                y1 = window - border if y + window < h else window
                x_0 = border if x0 > 0 else 0
                x_1 = window - border if x0 + window < w else window
                acc[:, y + y0:y + y1, x0 + x_0:x0 + x_1] += o[:, y0:y1, x_0:x_1]
                cnt[y + y0:y + y1, x0 + x_0:x0 + x_1] += 1
    return (acc / np.maximum(cnt, 1)).astype(np.float32)


def run_one(method: str, size: int, device: str, repeats: int) -> dict:
    from virtualstain.inference.tiling import DEFAULT_CPU_BUDGET_MB, auto_tile_size, predict_padded

    dev = torch.device(device)
    net = _network(dev, prepared=method != "plain")
    image = np.random.default_rng(0).normal(size=(1, size, size)).astype(np.float32)
    tile = auto_tile_size(net.config, DEFAULT_CPU_BUDGET_MB if dev.type == "cpu" else 8192, image.shape[1:])

    def once():
        if method in ("whole", "plain"):
            return predict_padded(net, image, None, dev)
        if method == "tiled":
            return predict_padded(net, image, tile, dev)
        return frm_sliding_window(net, image, dev)

    once() if method != "frm" else None  # warm-up (the FRM window is slow enough to skip it)
    times = []
    for _ in range(repeats if method != "frm" else 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = once()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    np.save(f"/tmp/bench_{method}.npy", out)
    return {"method": method, "seconds": min(times), "tile": list(tile) if method == "tiled" else None,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--method")
    args = ap.parse_args()
    if args.method:
        print(json.dumps(run_one(args.method, args.size, args.device, args.repeats)))
        return
    print(f"pics network, {args.size}x{args.size} px, device {args.device}, torch threads {torch.get_num_threads()}")
    results = {}
    for method in ("plain", "whole", "tiled", "frm"):
        out = subprocess.run([sys.executable, __file__, "--method", method, "--size", str(args.size),
                              "--device", args.device, "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True)
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
    whole, tiled = np.load("/tmp/bench_whole.npy"), np.load("/tmp/bench_tiled.npy")
    mpx = args.size ** 2 / 1e6
    base = results["whole"]["seconds"]
    print(f"{'method':<28}{'seconds':>9}{'Mpx/s':>9}{'vs whole':>10}{'peak RSS MB':>13}")
    labels = {"plain": "whole, plain torch module", "whole": "whole image", "tiled": f"tiled (core {results['tiled']['tile']})",
              "frm": "FRM sliding window 256/64"}
    for m in ("plain", "whole", "tiled", "frm"):
        r = results[m]
        print(f"{labels[m]:<28}{r['seconds']:>9.2f}{mpx / r['seconds']:>9.2f}{r['seconds'] / base:>10.2f}"
              f"{r['peak_rss_mb']:>13.0f}")
    print(f"tiled / whole time: {results['tiled']['seconds'] / base:.2f} (aim <= 1.2)")
    print(f"FRM window / tiled time: {results['frm']['seconds'] / results['tiled']['seconds']:.1f} (aim >= 5)")
    span = float(whole.max() - whole.min())
    print(f"max |tiled - whole| / output range: {np.abs(tiled - whole).max() / span:.2e}")


if __name__ == "__main__":
    main()
