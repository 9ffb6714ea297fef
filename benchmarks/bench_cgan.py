"""cGAN vs U-Net (MAE) on fluorescence → fluorescence pairs: the table issue 15 asks for.

For every pair and config, ``virtualstain.train`` runs with the same budget, split and seed; the test regions
(predicted by the bundle, as ``train`` judges them) are scored here in the paper's 8-bit frame — prediction and
target mapped by the target region's min/max to [0, 255] — by MAE, PSNR, SSIM, Pearson r, VirFluoNet's
tolerance index (:func:`~virtualstain.metrics.tolerance_index`), the high-frequency power ratio (power above half
the Nyquist frequency, prediction / target; :func:`~virtualstain.metrics.spectrum.high_frequency_power_ratio`)
and the Nyquist power ratio (checkerboard). Rows accumulate in ``OUT/rows.json`` (rerun to resume).

    python benchmarks/bench_cgan.py --data-dir ../shared/data --out /tmp/cgan --minutes 4

Configs: ``cgan`` (VirFluoNet generator + the paper's discriminator, its loss), ``cgan_patchgan`` (the same with
pix2pix's 70×70 PatchGAN), ``generator_mae`` (the same generator trained on MAE alone: the GAN's effect in
isolation) and ``pics_mae`` (the library's full-resolution U-Net, MAE).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: name → (input files joined with ';', target file), relative to the data folder.
PAIRS = {
    "bpae_actin_nuclei_to_mito": ("bpae_actin_mito_nuclei/actin.tif;bpae_actin_mito_nuclei/nuclei.tif",
                                  "bpae_actin_mito_nuclei/mito.tif"),
    "cellprofiler_dna_ph3_to_actin": ("cellprofiler_human/dna.tif;cellprofiler_human/ph3.tif",
                                      "cellprofiler_human/actin.tif"),
    "bbbc022_ch0_ch1_to_ch2": ("bbbc022_cellpainting/crop_3ch.tif", "bbbc022_cellpainting/crop_3ch.tif"),
}
CONFIGS = {
    "cgan": {"model": {"architecture": "cgan"}},
    "cgan_patchgan": {"model": {"architecture": "cgan"}, "training": {"adversarial": {"discriminator": "patchgan"}}},
    "generator_mae": {"model": {"architecture": "cgan"}, "training": {"adversarial": None}},
    "pics_mae": {"training": {"loss": "mae"}},
}


@dataclass
class Row:
    pair: str
    config: str
    seed: int
    mae_8bit: float
    psnr: float
    ssim: float
    r: float
    tolerance_index: float
    high_frequency_power_ratio: float
    nyquist_power_ratio: float
    epochs: int
    patches_per_second: float
    train_seconds: float


def write_manifest(pair: str, data: Path, folder: Path) -> Path:
    """A one-row manifest; the Cell Painting crop's channels are extracted into ``folder`` (one file per channel)."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs, target = PAIRS[pair]
    if pair.startswith("bbbc022"):
        import tifffile

        stack = tifffile.imread(data / inputs)
        paths = []
        for c in range(3):
            path = folder / f"bbbc022_ch{c}.tif"
            tifffile.imwrite(path, stack[c])
            paths.append(str(path.resolve()))
        row = [f"{paths[0]};{paths[1]}", paths[2]]
    else:
        row = [";".join(str((data / p).resolve()) for p in inputs.split(";")), str((data / target).resolve())]
    out = folder / f"{pair}.csv"
    with open(out, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["input", "target"], row])
    return out


def score(prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The paper's frame: both mapped by the target's min/max to [0, 255]; then every measure of the table."""
    from virtualstain.metrics import pearson_r, psnr, ssim, tolerance_index
    from virtualstain.metrics.checkerboard import nyquist_power_ratio
    from virtualstain.metrics.spectrum import high_frequency_power_ratio

    lo, hi = float(target.min()), float(target.max())
    p = (prediction - lo) / (hi - lo) * 255.0
    t = (target - lo) / (hi - lo) * 255.0
    return {"mae_8bit": float(np.abs(p - t).mean()), "psnr": psnr(p, t, 255.0), "ssim": ssim(p, t, 255.0),
            "r": pearson_r(p, t), "tolerance_index": tolerance_index(np.clip(p, 0, 255), t).tolerance_level,
            "high_frequency_power_ratio": high_frequency_power_ratio(p, t),
            "nyquist_power_ratio": nyquist_power_ratio(p, t)}


def run_one(pair: str, manifest: Path, config: str, seed: int, minutes: float, out: Path) -> Row:
    from virtualstain.training.config import config_from_dict
    from virtualstain.workflows.stain.train import train

    data = json.loads(json.dumps(CONFIGS[config]))
    data.setdefault("training", {}).update(seed=seed, progress_bar=False)
    started = time.perf_counter()
    result = train(manifest, out / "runs" / pair / f"{config}_seed{seed}", config_from_dict(data, config),
                   max_minutes=minutes, log=lambda line: print(f"    {line}"))
    seconds = time.perf_counter() - started
    assert result.summary is not None and result.held_out
    scores = [score(h.prediction[0], h.target[0]) for h in result.held_out]
    mean = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
    return Row(pair, config, seed, **mean, epochs=result.summary.epochs,  # type: ignore[arg-type]
               patches_per_second=result.summary.patches_per_second, train_seconds=round(seconds, 1))


def table(rows: list[Row]) -> str:
    head = ["pair", "config", "seed", "MAE (8-bit)", "PSNR dB", "SSIM", "r", "tolerance index", "HF power ratio",
            "Nyquist ratio", "epochs", "patches/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r.pair} | {r.config} | {r.seed} | {r.mae_8bit:.2f} | {r.psnr:.2f} | {r.ssim:.3f} | {r.r:.3f} | "
                     f"{r.tolerance_index:.3f} | {r.high_frequency_power_ratio:.3f} | {r.nyquist_power_ratio:.2f} | "
                     f"{r.epochs} | {r.patches_per_second} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("VIRTUALSTAIN_DATA", "../shared/data"))
    ap.add_argument("--out", default="cgan-study")
    ap.add_argument("--pairs", nargs="+", default=list(PAIRS))
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--minutes", type=float, default=4.0)
    args = ap.parse_args()
    out, data = Path(args.out), Path(args.data_dir)
    record = out / "rows.json"
    rows = [Row(**r) for r in json.loads(record.read_text())] if record.exists() else []
    for pair in args.pairs:
        manifest = write_manifest(pair, data, out / "manifests")
        for config in args.configs:
            for seed in args.seeds:
                if any((r.pair, r.config, r.seed) == (pair, config, seed) for r in rows):
                    continue
                print(f"{pair} / {config} / seed {seed}", flush=True)
                row = run_one(pair, manifest, config, seed, args.minutes, out)
                print(f"  {row}", flush=True)
                rows.append(row)
                out.mkdir(parents=True, exist_ok=True)
                record.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    text = table(rows)
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
