"""Nuclei segmenters judged on held-out reference labels: classical vs learned, F1 at IoU 0.5, count error, time.

    python benchmarks/bench_segmenter.py --data-dir ../shared/data [--model FOLDER] [--out results.json]

Reference sets, none of them used to train the shipped segmenter: the 10 ``bbbc039_nuclei`` images, the right
half of the ``stardist_nuclei`` image (its left half trained it), the Hoechst channel of
``celldetective_bf_hoechst`` (segmented *without* its pixel size) and every 8th frame of
``ctc_sim_nuclei_track``. Both methods run without a pixel size, so each sizes the nuclei from the image.
Timing: one 1024×1024 image (BBBC039 tiles mirrored to that size), median of 3 after a warm-up, in this
process (torch threads as set by the environment).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tifffile

from virtualstain.analysis import match_objects, segment_nuclei, segmentation_lengths
from virtualstain.workflows.stain.nuclei_segmenter import segment_nuclei_learned


def reference_sets(data: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Name → list of (image, labels)."""
    sets: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    bbbc = data / "bbbc039_nuclei"
    sets["bbbc039 (10 held out)"] = [(tifffile.imread(p), tifffile.imread(bbbc / "labels" / p.name))
                                     for p in sorted((bbbc / "images").glob("*.tif"))]
    stardist = data / "stardist_nuclei"
    image, labels = tifffile.imread(stardist / "image.tif"), tifffile.imread(stardist / "labels.tif")
    half = image.shape[1] // 2  # the shipped segmenter trained on the left half
    sets["stardist image, right half"] = [(image[:, half:], labels[:, half:])]
    cd = data / "celldetective_bf_hoechst"
    channels = json.loads((cd / "sample.json").read_text())["channels"]
    sets["celldetective Hoechst"] = [(tifffile.imread(cd / "sample_4ch.tif")[channels.index("live_nuclei_channel")],
                                      tifffile.imread(cd / "nuclei_labels.tif"))]
    ctc = data / "ctc_sim_nuclei_track"
    sets["CTC SIM+ (every 8th frame)"] = [(tifffile.imread(ctc / "images" / f"t{t:03d}.tif"),
                                           tifffile.imread(ctc / "seg" / f"man_seg{t:03d}.tif")) for t in range(0, 65, 8)]
    return sets


def classical(image: np.ndarray) -> np.ndarray:
    return segment_nuclei(image, **segmentation_lengths(image, None).kwargs())


def learned(model: str | None):
    return lambda image: segment_nuclei_learned(image, model).labels


def score(method, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean F1 at IoU 0.5 and mean |count error| over images, and the pooled count error."""
    f1, errors, n_pred, n_true = [], [], 0, 0
    for image, labels in pairs:
        m = match_objects(method(image.astype(np.float32)), labels)
        f1.append(m.f1)
        errors.append(abs(m.count_error))
        n_pred, n_true = n_pred + m.n_predicted, n_true + m.n_true
    return {"f1": float(np.mean(f1)), "abs_count_error": float(np.mean(errors)),
            "pooled_count_error": (n_pred - n_true) / n_true}


def seconds_1024(method, image: np.ndarray, repeats: int = 3) -> tuple[float, float, float]:
    """(median, min, max) seconds for one 1024² image."""
    big = np.pad(image, [(0, max(0, 1024 - n)) for n in image.shape], mode="reflect")[:1024, :1024].astype(np.float32)
    method(big)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        method(big)
        times.append(time.perf_counter() - started)
    return float(np.median(times)), min(times), max(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--model", help="a segmenter bundle (default: the shipped one)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import torch

    sets = reference_sets(args.data_dir)
    methods = {"classical": classical, "learned": learned(args.model)}
    results: dict[str, dict] = {}
    print(f"torch threads {torch.get_num_threads()}")
    print("| set | method | F1 @ IoU 0.5 | mean abs count error | pooled count error |\n|---|---|---:|---:|---:|")
    for name, pairs in sets.items():
        for label, method in methods.items():
            s = score(method, pairs)
            results.setdefault(name, {})[label] = s
            print(f"| {name} | {label} | {s['f1']:.3f} | {100 * s['abs_count_error']:.1f} % | "
                  f"{100 * s['pooled_count_error']:+.1f} % |", flush=True)
    sample = sets["bbbc039 (10 held out)"][0][0]
    for label, method in methods.items():
        median, low, high = seconds_1024(method, sample)
        results.setdefault("seconds_1024", {})[label] = [median, low, high]
        print(f"{label}: 1024² in {median:.2f} s ({low:.2f}–{high:.2f})")
    ratio = results["seconds_1024"]["learned"][0] / results["seconds_1024"]["classical"][0]
    print(f"learned / classical time: {ratio:.2f}×")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
