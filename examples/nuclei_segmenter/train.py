"""Train the learned nuclei segmenter that ships with virtualstain, with virtualstain's own training workflow.

    python examples/nuclei_segmenter/train.py --data-dir ../shared/data --out /tmp/nuclei-segmenter --minutes 15

Data: ``bbbc039_nuclei_train`` (BBBC039 U2OS Hoechst, CC0; 148 images with instance labels; every 7th
validates), the left half of the ``stardist_nuclei`` image (DSB2018, BSD-3; its right half is a held-out
check) and 24 synthetic fields of textured nuclei (``virtualstain.data.synthetic``). The BBBC039 test,
celldetective and CTC images are *not* used: they are the held-out checks. Each
image is rescaled so that its median nucleus (from the labels) is
:data:`~virtualstain.analysis.learned_nuclei.CANONICAL_DIAMETER_PX` across, times a random factor in
[0.8, 1.25] (the error of the size estimate at prediction), and the targets are the foreground and
normalised distance maps of :func:`~virtualstain.analysis.learned_nuclei.target_maps`. Everything is
written under ``OUT/prepared`` (a manifest and TIFFs), then ``virtualstain.train`` trains on it and
``OUT/run/model`` is the bundle; ``--install`` copies it into the package's ``weights/`` folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tifffile
from skimage.measure import regionprops
from skimage.transform import resize

from virtualstain.analysis import match_objects
from virtualstain.analysis.learned_nuclei import CANONICAL_DIAMETER_PX, target_maps
from virtualstain.data.synthetic import make_field
from virtualstain.training.config import config_from_dict
from virtualstain.workflows.stain.nuclei_segmenter import WatershedSettings, segment_nuclei_learned
from virtualstain.workflows.stain.train import train

CONFIG = {
    "model": {"architecture": "unet", "depth": 4, "base_width": 16, "max_width": 128, "residual": False,
              "upsampling": "bilinear"},
    "data": {"patch_size": [128, 128], "augment": True, "intensity_augmentation": True,
             "input_normalization_scope": "image", "target_channel_names": ["foreground", "distance"]},
    "training": {"loss": "mse", "batch_size": 8, "progress_bar": False, "seed": 0},
}


def median_diameter(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter (px) of the labelled objects of ≥ 12 px."""
    diameters = [p.equivalent_diameter_area for p in regionprops(labels)]
    return float(np.median([d for d in diameters if d >= 4] or diameters))


def rescaled(image: np.ndarray, labels: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (linear interpolation, anti-aliased when shrinking) and ``labels`` (nearest) scaled by ``factor``."""
    shape = tuple(max(16, round(n * factor)) for n in image.shape)
    img = resize(image.astype(np.float32), shape, order=1, anti_aliasing=factor < 1, preserve_range=True)
    lab = resize(labels, shape, order=0, anti_aliasing=False, preserve_range=True).astype(np.int32)
    return img.astype(np.float32), lab


def pairs(data: Path) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """(name, image, labels, split) of the training data."""
    folder = data / "bbbc039_nuclei_train"
    out = []
    for k, path in enumerate(sorted((folder / "images").glob("*.tif"))):
        labels = tifffile.imread(folder / "labels" / path.name).astype(np.int32)
        out.append((path.stem, tifffile.imread(path).astype(np.float32), labels, "val" if k % 7 == 3 else "train"))
    stardist = data / "stardist_nuclei"
    image, labels = tifffile.imread(stardist / "image.tif"), tifffile.imread(stardist / "labels.tif")
    half = image.shape[1] // 2  # the left half trains; the right half is the held-out check
    out.append(("stardist_left", image[:, :half].astype(np.float32), labels[:, :half].astype(np.int32), "train"))
    for seed in range(24):
        field = make_field((256, 256), seed=1000 + seed, modality="phase", cell_radius_px=14.0 + seed % 6 * 3)
        out.append((f"synthetic{seed:02d}", field.target[0], field.nuclei_labels.astype(np.int32), "train"))
    return out


def prepare(data: Path, folder: Path, seed: int = 0) -> Path:
    """Write the rescaled inputs and target maps under ``folder`` and return the manifest."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, image, labels, split in pairs(data):
        if labels.max() == 0:  # an empty field teaches only the background; its size is unknown
            continue
        factor = CANONICAL_DIAMETER_PX / median_diameter(labels) * float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
        img, lab = rescaled(image, labels, factor)
        foreground, distance = target_maps(lab)
        paths = [folder / f"{name}_{what}.tif" for what in ("input", "foreground", "distance")]
        tifffile.imwrite(paths[0], img)
        tifffile.imwrite(paths[1], foreground.astype(np.uint8))
        tifffile.imwrite(paths[2], np.round(distance * 100).astype(np.uint8))
        rows.append([str(paths[0]), f"{paths[1]};{paths[2]}", split])
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["input", "target", "split"])
        writer.writerows(rows)
    return manifest


def tune_split(model_dir: Path, data: Path) -> tuple[WatershedSettings, float]:
    """The split thresholds with the best mean F1 (IoU 0.5) on the validation images, at their own resolution."""
    val = [(image, labels) for _, image, labels, split in pairs(data) if split == "val"]
    best: tuple[float, WatershedSettings] = (-1.0, WatershedSettings())
    for fg in (0.4, 0.5, 0.6):
        for seed in (0.3, 0.4, 0.5, 0.6, 0.7):
            settings = WatershedSettings(foreground_threshold=fg, seed_threshold=seed)
            f1 = float(np.mean([match_objects(segment_nuclei_learned(image, str(model_dir), settings).labels,
                                              labels).f1 for image, labels in val]))
            print(f"  split {fg} / {seed}: validation F1 {f1:.3f}")
            best = max(best, (f1, settings), key=lambda b: b[0])
    return best[1], best[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--install", action="store_true", help="copy the bundle into src/virtualstain/weights/")
    args = ap.parse_args()
    prepared = args.out / "prepared"
    manifest = prepared / "manifest.csv" if (prepared / "manifest.csv").is_file() else prepare(args.data_dir, prepared)
    result = train(manifest, args.out / "run", config_from_dict(CONFIG, "nuclei segmenter"), max_minutes=args.minutes,
                   log=print)
    settings, f1 = tune_split(result.model_dir, args.data_dir)
    (result.model_dir / "split.json").write_text(json.dumps(asdict(settings), indent=2) + "\n")
    print(f"bundle: {result.model_dir}; split settings {settings} (validation F1 {f1:.3f})")
    if args.install:
        dest = Path(__file__).resolve().parents[2] / "src" / "virtualstain" / "weights" / "nuclei"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(result.model_dir, dest)
        print(f"installed: {dest}")


if __name__ == "__main__":
    main()
