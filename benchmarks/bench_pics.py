"""PICS through trained virtual stains: are the compartments' doubling times recovered from phase alone?

A `pics` network is trained (--minutes, default config) on synthetic phase fields → nuclei and membrane stains
(`virtualstain.data.synthetic.write_dataset`). A growth time-lapse of another field
(`growth_time_lapse`: nuclei double in --doubling-nucleus h, cytoplasm in --doubling-cytoplasm h, no motion or
division) then goes through `run_pics` with that model's nuclei channel and its membrane channel as the cell stain.
Printed: the field doubling time per compartment against the truth (and the same from the true labels), the cell
count per frame against the truth, and the share of true cells followed by one track over every frame.

    python benchmarks/bench_pics.py [--minutes 3] [--frames 8] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--doubling-nucleus", type=float, default=20.0)
    ap.add_argument("--doubling-cytoplasm", type=float, default=26.0)
    ap.add_argument("--out")
    args = ap.parse_args()
    from virtualstain.analysis.cell_time_lapse import measure_time_lapse
    from virtualstain.data.io import write_tiff
    from virtualstain.data.synthetic import growth_time_lapse, write_dataset
    from virtualstain.training.config import TrainConfig
    from virtualstain.workflows.stain.pics import run_pics
    from virtualstain.workflows.stain.train import train

    work = Path(args.out or tempfile.mkdtemp(prefix="bench_pics_"))
    manifest = write_dataset(work / "train_data", n_fields=6, shape=(256, 256), seed=100, pixel_size_um=0.5)
    config = TrainConfig()
    config.model.architecture = "pics"
    config.training.max_minutes = args.minutes
    started = time.perf_counter()
    result = train(manifest, work / "run", config, log=lambda line: None)
    print(f"trained {result.summary.epochs} epochs in {time.perf_counter() - started:.0f} s; test r "
          f"{result.summary.test_pearson_r}")
    g = growth_time_lapse(shape=(256, 256), frames=args.frames, interval_h=2.0, seed=7,
                          doubling_nucleus_h=args.doubling_nucleus, doubling_cytoplasm_h=args.doubling_cytoplasm)
    phase = write_tiff(work / "phase.tif", g.phase, pixel_size_um=g.pixel_size_um, description={"unit": "rad"})
    started = time.perf_counter()
    names = result.bundle.output_channel_names
    found = run_pics(phase, result.model_dir, work / "pics", cell_model=result.model_dir, nucleus_channel=names[0],
                     cell_channel=names[1], cell_stain="membrane", wavelength_um=0.55, interval_h=2.0)
    seconds = time.perf_counter() - started
    frames = len(g.times_h)
    truth = measure_time_lapse(g.phase, np.repeat(g.nuclei_labels[None], frames, 0),
                               np.repeat(g.cell_labels[None], frames, 0), g.times_h, pixel_size_um=g.pixel_size_um,
                               wavelength_um=0.55)
    print(f"pics: {frames} frames of 256² in {seconds:.1f} s")
    print("| compartment | true doubling h | from true labels | through virtual stains | error |")
    print("|---|---:|---:|---:|---:|")
    for compartment, true in (("nucleus", args.doubling_nucleus), ("cytoplasm", args.doubling_cytoplasm),
                              ("cell", truth.field_doubling_h("cell"))):
        got = found.tables.field_doubling_h(compartment)
        print(f"| {compartment} | {true:.2f} | {truth.field_doubling_h(compartment):.2f} | {got:.2f} | "
              f"{100 * (got / true - 1):+.1f} % |")
    n_true = len(np.unique(g.nuclei_labels)) - 1
    print("cells per frame (truth " + str(n_true) + "): " + ", ".join(str(r["cell_count"]) for r in found.tables.fields))
    tracked = found.tables.tracks.labels
    followed = 0
    for label in np.unique(g.nuclei_labels[g.nuclei_labels > 0]):
        ids = set()
        for t in range(frames):
            under = tracked[t][g.nuclei_labels == label]
            under = under[under > 0]
            ids.add(int(np.bincount(under).argmax()) if under.size else 0)
        followed += len(ids) == 1 and 0 not in ids
    print(f"true cells followed by one track over all {frames} frames: {followed}/{n_true} "
          f"({100 * followed / n_true:.1f} %)")


if __name__ == "__main__":
    main()
