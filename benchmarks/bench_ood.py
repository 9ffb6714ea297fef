"""Does the input check warn on real shifts and stay quiet on the training domain?

For each finished training run (``virtualstain train … --out RUN``), the test regions (held out: neither trained on
nor used for the thresholds, which come from the validation regions) are scored tile by tile
(:func:`~virtualstain.inference.domain_check.check_domain`, every tile) as they are, then after each of five shifts:

- ``rescale 1.5×``  the region magnified 1.5× (bilinear), given without a pixel size (another magnification);
- ``modality``      the region's real fluorescence (the target's first channel, in every input channel) as input;
- ``blur``          a Gaussian blur of σ = 4 px;
- ``inverted``      contrast inverted, x' = max + min − x per channel;
- ``gain 3×``       every grey level × 3.

Printed per run and case: tiles, the share outside (the false-alarm rate for ``none``), whether the image-level
warning fires and which groups it names, and the seconds the check takes per megapixel (against the prediction's
seconds per megapixel in the same run).

    python benchmarks/bench_ood.py RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def shifts(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The five shifted versions of input ``x`` (channels first), given the target ``y``."""
    from scipy import ndimage

    from virtualstain.inference.rescale import resample_lateral

    ny, nx = x.shape[-2:]
    lo = x.reshape(len(x), -1).min(1).reshape(-1, *([1] * (x.ndim - 1)))
    hi = x.reshape(len(x), -1).max(1).reshape(-1, *([1] * (x.ndim - 1)))
    return {"none": x,
            "rescale 1.5×": resample_lateral(x, (round(1.5 * ny), round(1.5 * nx))),
            "modality": np.repeat(y[:1], len(x), axis=0).astype(np.float32),
            "blur": ndimage.gaussian_filter(x, sigma=(0,) * (x.ndim - 2) + (4, 4)).astype(np.float32),
            "inverted": (hi + lo - x).astype(np.float32),
            "gain 3×": (3 * x).astype(np.float32)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args()
    import warnings

    from virtualstain.data.samples import read_manifest
    from virtualstain.data.splits import Region
    from virtualstain.inference.domain_check import UnfamiliarInputWarning, check_domain, warn_if_unfamiliar
    from virtualstain.inference.predict import predict
    from virtualstain.models.bundle import load_bundle

    print("| run | case | tiles | outside | image warns | groups named | check s/Mpx | predict s/Mpx |")
    print("|---|---|---:|---:|---|---|---:|---:|")
    for run in map(Path, args.runs):
        bundle = load_bundle(run / "model")
        splits = json.loads((run / "splits.json").read_text())
        samples = read_manifest(bundle.training.manifest, bundle.config.spatial_dims, bundle.input_channels)
        tests = [Region(r["sample"], r["split"], tuple(tuple(b) for b in r["bounds"]))
                 for r in splits["regions"] if r["split"] == "test"]
        for case in ("none", "rescale 1.5×", "modality", "blur", "inverted", "gain 3×"):
            n = outside = 0
            warned, named, check_s, predict_s, mpx = 0, set(), 0.0, 0.0, 0.0
            for region in tests:
                x, y = region.crop(samples[region.sample])
                image = shifts(x, y)[case]
                t0 = time.perf_counter()
                scores = check_domain(bundle, image, max_tiles=None)
                check_s += time.perf_counter() - t0
                if scores is None:
                    continue
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    warned += warn_if_unfamiliar(bundle, scores, case)
                for w in caught:
                    if issubclass(w.category, UnfamiliarInputWarning):
                        print(f"    {w.message}")
                named.update(scores.groups_outside())
                n += len(scores.corners)
                outside += int(scores.outside.sum())
                if case == "none":
                    t0 = time.perf_counter()
                    predict(bundle, image)
                    predict_s += time.perf_counter() - t0
                mpx += image[0].size / 1e6
            pred = f"{predict_s / mpx:.2f}" if case == "none" and mpx else ""
            print(f"| {run.name} | {case} | {n} | {100 * outside / max(n, 1):.1f} % | {warned}/{len(tests)} | "
                  f"{', '.join(sorted(named)) or '–'} | {check_s / max(mpx, 1e-9):.2f} | {pred} |", flush=True)


if __name__ == "__main__":
    main()
