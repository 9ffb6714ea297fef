"""Autofocus (VirFluoNet): train on simulated defocus pairs, judge per defocus on held-out fields and on the real pair.

Runs ``examples/autofocus/make_pairs.py``'s pairs (BBBC006 in-focus Hoechst planes, all but well a01 site 1,
plus ``--bbbc039 N`` BBBC039 images, blurred by :func:`virtualstain.optics.defocus_image` over ``--z-um``
without −2…+2 µm), trains ``--config`` (default: ``model: {architecture: cgan}``) for ``--minutes`` on them
(split by field: the test fields never trained), and prints, per z of the test fields and for the measured
a01 s1 pair (z −32 µm), SSIM and PSNR of the defocused input and of the refocused prediction against the
in-focus plane (data range: the in-focus region's max − min).

    python benchmarks/bench_autofocus.py --data-dir ../shared/data --out /tmp/af --minutes 6 --bbbc039 16
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent


def scores(image: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(SSIM, PSNR dB) of ``image`` against ``target``, data range the target's max − min."""
    from virtualstain.metrics import psnr, ssim

    span = float(target.max() - target.min())
    return ssim(image, target, span), psnr(image, target, span)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("VIRTUALSTAIN_DATA", "../shared/data"))
    ap.add_argument("--out", default="autofocus-study", type=Path)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--z-um", default="-36:8:2")
    ap.add_argument("--bbbc039", type=int, default=16)
    ap.add_argument("--config", help="YAML config (default: the cGAN)")
    args = ap.parse_args()
    from virtualstain.data.samples import read_manifest
    from virtualstain.inference.predict import predict
    from virtualstain.training.config import config_from_dict, load_config
    from virtualstain.workflows.stain.train import train

    out: Path = args.out
    pairs = out / "pairs"
    if not (pairs / "real" / "manifest.csv").exists():
        subprocess.run([sys.executable, str(HERE.parent / "examples" / "autofocus" / "make_pairs.py"), "--data-dir",
                        args.data_dir, "--out", str(pairs), f"--z-um={args.z_um}", "--bbbc039", str(args.bbbc039)],
                       check=True)
    config = load_config(args.config) if args.config else config_from_dict({"model": {"architecture": "cgan"}})
    config.training.progress_bar = False
    started = time.perf_counter()
    result = train(pairs / "synthetic" / "manifest.csv", out / "run", config, max_minutes=args.minutes,
                   log=lambda line: print(f"    {line}"))
    assert result.summary is not None and result.bundle is not None
    print(f"trained {result.summary.epochs} epochs, {result.summary.patches_per_second} patches/s, "
          f"{time.perf_counter() - started:.0f} s")
    per_z: dict[float, list[tuple[float, float, float, float]]] = {}
    for h in result.held_out:
        match = re.search(r"_z(-?\d+(?:\.\d+)?)", h.name)
        assert match, h.name
        s_in, p_in = scores(h.input[0], h.target[0])
        s_out, p_out = scores(h.prediction[0], h.target[0])
        per_z.setdefault(float(match.group(1)), []).append((s_in, s_out, p_in, p_out))
    lines = ["| z (µm) | fields | SSIM input | SSIM refocused | PSNR input (dB) | PSNR refocused (dB) |",
             "|---|---|---|---|---|---|"]
    for z in sorted(per_z):
        v = np.array(per_z[z])
        lines.append(f"| {z:g} | {len(v)} | {v[:, 0].mean():.3f} | {v[:, 1].mean():.3f} | {v[:, 2].mean():.2f} | "
                     f"{v[:, 3].mean():.2f} |")
    real = read_manifest(pairs / "real" / "manifest.csv")[0]
    refocused = predict(result.bundle, real.input)
    (s_in, p_in), (s_out, p_out) = scores(real.input[0], real.target[0]), scores(refocused[0], real.target[0])
    lines.append(f"| real a01 s1 (−32) | 1 | {s_in:.3f} | {s_out:.3f} | {p_in:.2f} | {p_out:.2f} |")
    text = "\n".join(lines)
    (out / "table.md").write_text(text + "\n")
    (out / "summary.json").write_text(json.dumps({"epochs": result.summary.epochs,
                                                  "patches_per_second": result.summary.patches_per_second,
                                                  "config": yaml.safe_load(config.to_yaml())}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
