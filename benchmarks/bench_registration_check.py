"""Does ``train --check-registration`` find the misaligned pair among real ones?

The FRM field (phase → Hoechst, 512²) is cut into four 240² pairs; in the second the Hoechst crop is taken
(+3, −2) px away from the phase crop (real content, nothing wrapped). The check trains its preliminary model
(--minutes) and registers every pair; printed: each pair's transform, its largest displacement and the flag.

    python benchmarks/bench_registration_check.py [--data ../shared/data] [--minutes 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--out")
    args = ap.parse_args()
    import tifffile

    from virtualstain.data.samples import samples_from_arrays
    from virtualstain.training.config import TrainConfig
    from virtualstain.workflows.stain.registration_check import check_registration

    folder = Path(args.data) / "frm_phase_hoechst"
    phase = tifffile.imread(folder / "phase.tif").astype(np.float32)
    hoechst = tifffile.imread(folder / "hoechst.tif").astype(np.float32)
    size, shift = 240, {1: (3, -2)}
    inputs, targets = [], []
    for k, (y, x) in enumerate([(8, 8), (8, 264), (264, 8), (264, 264)]):
        dy, dx = shift.get(k, (0, 0))
        inputs.append(phase[None, y:y + size, x:x + size])
        targets.append(hoechst[None, y + dy:y + dy + size, x + dx:x + dx + size])
    samples = samples_from_arrays(inputs, targets)
    config = TrainConfig()
    config.training.max_minutes = args.minutes / 0.2  # the check takes 20 % of the budget
    run = Path(args.out or tempfile.mkdtemp(prefix="bench_regcheck_"))
    started = time.perf_counter()
    found = check_registration(samples, config, run, print)
    print(f"{time.perf_counter() - started:.1f} s in all")
    print("| pair | true shift (dy, dx) px | found (dy, dx) px | rotation ° | scale | max displacement px | flagged |")
    print("|---|---|---|---:|---:|---:|---|")
    for k, p in enumerate(found):
        t = p.transform
        print(f"| {p.name} | {shift.get(k, (0, 0))} | ({t.dy:+.2f}, {t.dx:+.2f}) | {t.angle_deg:+.3f} | "
              f"{t.scale:.4f} | {p.max_displacement_px:.2f} | {p.misaligned} |")


if __name__ == "__main__":
    main()
