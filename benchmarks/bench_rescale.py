"""A model trained at one pixel size applied to images of another: automatic resampling vs resampling by hand.

The celldetective field (bright field → Hoechst, 0.3112 µm/px) is resampled by hand to --model-px (default
0.2 µm/px, as if taken at a higher magnification) and a `pics` model is trained there (automatic spatial
split, --minutes budget). That model then predicts the original 0.3112 µm/px field three ways, each scored by
Pearson r against the real Hoechst on the test strip (mapped back to the 0.3112 grid):

- automatic: `predict(..., pixel_size_um=0.3112)` resamples to the model's grid and back;
- by hand: the hand-resampled field predicted at the model's pixel size, the prediction zoomed back (scipy);
- naive: the 0.3112 µm/px pixels given to the model as if they were at its pixel size.

    python benchmarks/bench_rescale.py [--data ../shared/data] [--model-px 0.2] [--minutes 4] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--model-px", type=float, default=0.2)
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--out")
    args = ap.parse_args()
    import tifffile
    from scipy import ndimage

    from virtualstain.data.io import write_tiff
    from virtualstain.inference.predict import predict
    from virtualstain.inference.rescale import resample_lateral
    from virtualstain.models.bundle import load_bundle
    from virtualstain.training.config import TrainConfig
    from virtualstain.workflows.stain.train import train

    folder = Path(args.data) / "celldetective_bf_hoechst"
    stack = tifffile.imread(folder / "sample_4ch.tif").astype(np.float32)
    native_px = float(json.loads((folder / "sample.json").read_text()).get("spatial_calibration", 0.3112)) \
        if (folder / "sample.json").exists() else 0.3112
    bf, hoechst = stack[0:1], stack[3:4]
    factor = native_px / args.model_px
    fine_shape = (round(bf.shape[1] * factor), round(bf.shape[2] * factor))
    fine_bf, fine_h = resample_lateral(bf, fine_shape), resample_lateral(hoechst, fine_shape)
    work = Path(args.out or tempfile.mkdtemp(prefix="bench_rescale_"))
    work.mkdir(parents=True, exist_ok=True)
    write_tiff(work / "bf.tif", fine_bf, pixel_size_um=args.model_px)
    write_tiff(work / "hoechst.tif", fine_h, pixel_size_um=args.model_px)
    (work / "manifest.csv").write_text("input,target\nbf.tif,hoechst.tif\n")
    config = TrainConfig()
    config.training.max_minutes = args.minutes
    result = train(work / "manifest.csv", work / "run", config, log=lambda *a: None)
    bundle = load_bundle(result.model_dir)
    splits = json.loads((work / "run" / "splits.json").read_text())
    test = next(r for r in splits["regions"] if r["split"] == "test")
    (y0, y1), (x0, x1) = test["bounds"]
    coarse = (slice(int(round(y0 / factor)), int(round(y1 / factor))), slice(int(round(x0 / factor)), int(round(x1 / factor))))

    def r(pred: np.ndarray) -> float:
        return float(np.corrcoef(pred[0][coarse].ravel(), hoechst[0][coarse].ravel())[0, 1])

    auto = predict(bundle, bf, pixel_size_um=native_px)
    fine_pred = predict(bundle, fine_bf, pixel_size_um=args.model_px)
    by_hand = ndimage.zoom(fine_pred[0], (bf.shape[1] / fine_shape[0], bf.shape[2] / fine_shape[1]), order=1)[None]
    naive = predict(bundle, bf)  # no pixel size given: the pixels are taken to be at the model's size
    s = result.summary
    print(f"celldetective bright field → Hoechst, native {native_px:g} µm/px, model trained at {args.model_px:g} µm/px "
          f"(field resampled ×{factor:.3f} to {fine_shape}); {s.epochs} epochs in {s.seconds_this_session} s; "
          f"test r at the model's pixel size {list(s.test_pearson_r.values())[0]:.3f}")
    print(f"test strip on the native grid: rows {coarse[0].start}:{coarse[0].stop}, cols {coarse[1].start}:{coarse[1].stop}")
    rows = {"automatic (predict resamples)": r(auto), "by hand (resample, predict, zoom back)": r(by_hand),
            "naive (no resampling)": r(naive)}
    for name, value in rows.items():
        print(f"  {name:<42} r = {value:.4f}")
    gap = abs(rows["automatic (predict resamples)"] - rows["by hand (resample, predict, zoom back)"])
    print(f"|automatic − by hand| = {gap:.4f} (goal ≤ 0.05)")


if __name__ == "__main__":
    main()
