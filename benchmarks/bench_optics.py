"""Speed (and accuracy) of the optics module: Abbe forward model and TIE, against waveorder.

For each image size, in one run: a phase object of Gaussian "cells" (up to 3 rad) is imaged as a
3-plane bright-field stack (z = −1, 0, +1 µm, λ = 0.55 µm, 0.1 µm pixels, NA 0.55, S = 0.3) by our
Abbe model (mirror padding: the field is not periodic) plus noise σ = 0.002. The phase is then
reconstructed by our FFT-TIE and DCT-TIE and by waveorder's `models.isotropic_thin_3d`
(weak-object transfer function + Tikhonov) on the same stack. waveorder is timed cold (transfer
function + singular system + inverse) and with the transfer function cached (inverse only).
Prints seconds, ratios to waveorder, and the RMS phase error of each reconstruction (after removing
the mean, and for waveorder after a least-squares scale, since its output is in its own units).

    python benchmarks/bench_optics.py [--sizes 512,1024,2048] [--repeats 2]

waveorder is optional (it is not a dependency of virtualstain): `pip install waveorder` to compare.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from functools import partial

import numpy as np

from virtualstain import optics

LAMBDA, PX, NA, S, Z = 0.55, 0.1, 0.55, 0.3, [-1.0, 0.0, 1.0]


def cells_phase(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((n, n), dtype=float)
    phase = np.zeros((n, n))
    for _ in range(max(4, n * n // 20000)):
        radius = rng.uniform(15, 35)  # px; cells stay 3.5 radii inside the field (no flux across the border)
        cy, cx = rng.uniform(3.5 * radius, n - 3.5 * radius, 2)
        phase += rng.uniform(1.0, 3.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
    return phase


def best_of(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def rms(estimate: np.ndarray, truth: np.ndarray, fit_scale: bool = False) -> float:
    e, t = estimate - estimate.mean(), truth - truth.mean()
    if fit_scale:
        e = e * (np.sum(e * t) / np.sum(e * e))
    return float(np.sqrt(np.mean((e - t) ** 2)))


def waveorder_runs(stack: np.ndarray, repeats: int, regularization: float):
    try:
        import torch
        from waveorder.models import isotropic_thin_3d as wo
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    data = torch.as_tensor(stack, dtype=torch.float32)

    def transfer():
        absorption_tf, phase_tf = wo.calculate_transfer_function(
            stack.shape[1:], PX, Z, LAMBDA, 1.0, NA * S, NA)
        return wo.calculate_singular_system(absorption_tf, phase_tf)

    def cold():
        return wo.apply_inverse_transfer_function(data, transfer(), regularization_strength=regularization)[1].numpy()

    cold_s, phase = best_of(cold, repeats)
    system = transfer()
    cached_s, _ = best_of(lambda: wo.apply_inverse_transfer_function(data, system, regularization_strength=regularization),
                          repeats)
    return cold_s, cached_s, phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024,2048")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--wo-regularization", type=float, default=1e-5,
                        help="waveorder's Tikhonov strength (its default 1e-3 loses the cells' low frequencies here)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; numpy {np.__version__}")
    header = (f"{'size':>6} {'forward s':>10} {'FFT-TIE s':>10} {'DCT-TIE s':>10} {'wo cold s':>10} {'wo cached s':>11}"
              f" {'DCT/wo cached':>13} {'rms FFT':>8} {'rms DCT':>8} {'rms wo*':>8}")
    print(header)
    for n in (int(v) for v in args.sizes.split(",")):
        truth = cells_phase(n)
        forward_s, stack = best_of(partial(optics.brightfield_intensity, truth, z_um=Z, wavelength_um=LAMBDA,
                                           pixel_size_um=PX, na_obj=NA, coherence=S, padding="reflect"), 1)
        stack = optics.add_gaussian_noise(stack, 0.002, rng=1)
        tie = {}
        for solver in ("fft", "dct"):
            tie[solver] = best_of(partial(optics.tie_phase, stack, Z, wavelength_um=LAMBDA, pixel_size_um=PX,
                                          solver=solver), args.repeats)
        wo = waveorder_runs(stack, args.repeats, args.wo_regularization)
        cold = cached = ratio = rms_wo = float("nan")
        if wo is not None:
            cold, cached, phase_wo = wo
            ratio = tie["dct"][0] / cached
            rms_wo = rms(phase_wo, truth, fit_scale=True)
        print(f"{n:>6} {forward_s:>10.3f} {tie['fft'][0]:>10.3f} {tie['dct'][0]:>10.3f} {cold:>10.3f} {cached:>11.3f}"
              f" {ratio:>13.2f} {rms(tie['fft'][1], truth):>8.3f} {rms(tie['dct'][1], truth):>8.3f} {rms_wo:>8.3f}",
              flush=True)
    if wo is None:
        print("waveorder not installed: `pip install waveorder` to add its columns (nan above)")
    print("forward: Abbe, 3 planes, 49 source points; rms in rad; wo* = waveorder (regularization "
          f"{args.wo_regularization:g}) after a least-squares scale")


if __name__ == "__main__":
    main()
