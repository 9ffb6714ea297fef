"""Speed of single-shot 4× super-resolved phase (DL-SRQPI): a 647×490 intensity → 2588×1960 phase.

Measured in one run on the same input: the `sr_unet` network as `virtualstain predict` runs it
(normalisation, folded batch norm, channels-last), on the whole image and tiled from the default
memory budget; then, as the baseline, what TIE needs for the same output: DCT-TIE on two LR planes
plus bicubic 4× upsampling. With --model, a trained bundle is timed; otherwise the preset with random
weights (the same arithmetic). Prints seconds per image, output Mpx/s and ratios to the baseline.

    python benchmarks/bench_srqpi.py [--model RUN/model] [--device cpu|cuda] [--precision fp32|bf16|fp16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def _bundle(model: str | None, device: str):
    from virtualstain.data.normalization import Normalizer
    from virtualstain.models.bundle import ModelBundle, load_bundle
    from virtualstain.models.registry import build, make_config

    if model:
        return load_bundle(model, device=device)
    torch.manual_seed(0)
    network = build("sr_unet", make_config("sr_unet", 1, 1, 2, scale=4)).eval()
    identity = Normalizer("zscore", [0.0], [1.0])
    return ModelBundle(network, "sr_unet", identity, identity, ["brightfield"], ["phase"], pixel_size_um=2.6)


def _best(fn, repeats: int) -> float:
    fn()  # warm-up (first call builds the folded network, CUDA kernels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    from virtualstain.inference.predict import predict
    from virtualstain.optics import tie_phase
    from virtualstain.workflows.srqpi.evaluate import upsample_bicubic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="torch arithmetic (bf16: CPUs with native bf16 or CUDA; fp16: CUDA)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    bundle = _bundle(args.model, args.device)
    rng = np.random.default_rng(0)
    low = (1 + 0.1 * rng.standard_normal((1, 490, 647))).astype(np.float32)
    other = (1 + 0.1 * rng.standard_normal((490, 647))).astype(np.float32)
    out_shape = predict(bundle, low, tile_size=0, device=args.device, precision=args.precision).shape
    mpx = out_shape[1] * out_shape[2] / 1e6
    print(f"input {low.shape[1]}×{low.shape[2]} → output {out_shape[1]}×{out_shape[2]} ({mpx:.2f} Mpx), "
          f"device {args.device}, torch threads {torch.get_num_threads()}, precision {args.precision}")

    def tie_baseline():
        phase = tie_phase(np.stack([other, low[0]]), [-5.0, 5.0], wavelength_um=0.55, pixel_size_um=2.6, solver="dct")
        return upsample_bicubic(phase, 4)

    results = {
        "DCT-TIE (2 LR planes) + bicubic ×4 [baseline]": _best(tie_baseline, args.repeats),
        "sr_unet, whole image": _best(lambda: predict(bundle, low, tile_size=0, device=args.device, precision=args.precision),
                                      args.repeats),
        "sr_unet, tiled (default memory budget)": _best(
            lambda: predict(bundle, low, tile_size=None, device=args.device, precision=args.precision), args.repeats),
    }
    base = next(iter(results.values()))
    for name, seconds in results.items():
        print(f"{name:48s} {seconds:8.3f} s  {mpx / seconds:7.2f} Mpx/s  {seconds / base:6.2f}× the baseline's time")


if __name__ == "__main__":
    main()
