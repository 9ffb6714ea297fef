"""Robustness study of the training defaults: seeds × configs × real datasets, each under a wall-clock budget.

For every dataset, config (a YAML file, or the library's defaults) and seed, ``virtualstain.train`` runs with
``--max-minutes`` on the dataset's manifest and its test regions are judged by the training workflow itself. One
row per run: test Pearson r (mean over target channels), nuclei count error and F1 on the nuclear channel (when
the channel reads out as nuclei), SSIM, epochs reached, patches/s, and the largest drop of validation r between
consecutive epochs after the fifth. A table per dataset gives the mean ± half-range over seeds. Rows already in
``OUT/rows.json`` are kept (rerun to resume after an interruption); runs are one at a time (timing is per run).

    python benchmarks/bench_learner.py --data-dir ../shared/data --out /tmp/learner \\
        --configs defaults benchmarks/configs/landed_defaults.yaml --seeds 0 1 2 --minutes 5

Datasets (manifests are written under ``OUT/manifests``; no data is copied, except single channels extracted from
the multi-channel celldetective file into ``OUT/manifests``):

``frm_phase_hoechst``       phase → Hoechst, one 512² field, automatic strips;
``sephace_1plane``          bright field at 0 µm → DAPI; ``sephace_4planes``: the four central planes;
``isl_neurons``             13-plane phase contrast → DAPI, MAP2, NFH;
``celldetective``           bright field → Hoechst (another microscope, 0.311 µm/px);
``ifc_jurkat``              imaging-flow bright field → DNA, montages 1–3 train, 4 validates, 5 tests (cross-field).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DATASETS = ("frm_phase_hoechst", "sephace_1plane", "sephace_4planes", "isl_neurons", "celldetective", "ifc_jurkat")


def _rows_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_manifest(name: str, data: Path, folder: Path) -> Path:
    """The manifest of dataset ``name`` (absolute paths into ``data``)."""
    d = lambda *p: str((data.joinpath(*p)).resolve())  # noqa: E731
    out = folder / f"{name}.csv"
    if name == "frm_phase_hoechst":
        return _rows_csv(out, ["input", "target"], [[d(name, "phase.tif"), d(name, "hoechst.tif")]])
    if name in ("sephace_1plane", "sephace_4planes"):
        planes = "3" if name == "sephace_1plane" else "1,2,3,4"  # z_positions_um.txt: plane 3 is 0 µm
        return _rows_csv(out, ["input", "target", "input_channels"],
                         [[d("sephace_set1", "brightfield_zstack.tif"), d("sephace_set1", "dapi.tif"), planes]])
    if name == "isl_neurons":
        targets = ";".join(d(name, f) for f in ("dapi_confocal.tif", "map2_confocal.tif", "nfh_confocal.tif"))
        return _rows_csv(out, ["input", "target"], [[d(name, "phase_contrast_zstack.tif"), targets]])
    if name == "celldetective":
        import tifffile

        src = data / "celldetective_bf_hoechst"
        meta = json.loads((src / "sample.json").read_text(encoding="utf-8"))
        stack = tifffile.imread(src / "sample_4ch.tif")
        channels = meta["channels"]
        pixel = float(meta["spatial_calibration"])
        paths = []
        for channel, stem in (("brightfield_channel", "brightfield"), ("live_nuclei_channel", "hoechst")):
            path = folder / "celldetective" / f"{stem}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, stack[channels.index(channel)], resolution=(1 / pixel, 1 / pixel),
                             metadata={"unit": "um"})
            paths.append(str(path.resolve()))
        return _rows_csv(out, ["input", "target", "pixel_size_um"], [[paths[0], paths[1], str(pixel)]])
    if name == "ifc_jurkat":
        split = {1: "train", 2: "train", 3: "train", 4: "val", 5: "test"}
        return _rows_csv(out, ["input", "target", "split", "group"],
                         [[d("ifc_jurkat_bf_dna", f"montage{k}_brightfield.tif"),
                           d("ifc_jurkat_bf_dna", f"montage{k}_dna.tif"), s, f"montage{k}"] for k, s in split.items()])
    raise SystemExit(f"unknown dataset {name!r}; choose from {DATASETS}")


@dataclass
class Row:
    """One training run of the study."""

    dataset: str
    config: str
    seed: int
    test_r: float
    ssim: float
    nuclei_count_error: float
    nuclei_f1: float
    epochs: int
    patches_per_second: float
    train_seconds: float
    max_val_r_drop_after_5: float
    stop_reason: str


def max_drop_after(metrics_csv: Path, first_epoch: int = 5) -> float:
    """Largest fall of val_pearson between consecutive epochs after ``first_epoch`` (0 when it never falls)."""
    by_epoch: dict[int, float] = {}
    with open(metrics_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("val_pearson"):
                by_epoch[int(row["epoch"])] = float(row["val_pearson"])
    values = [by_epoch[e] for e in sorted(by_epoch) if e >= first_epoch]
    return max([a - b for a, b in zip(values, values[1:])] + [0.0])


def label_of(config_path: str, settings: list[str]) -> str:
    """The row's config name: the YAML's stem (or ``defaults``) and any ``--set`` overrides."""
    return "+".join(["defaults" if config_path == "defaults" else Path(config_path).stem, *settings])


def run_one(dataset: str, manifest: Path, config_path: str, seed: int, minutes: float | None, out: Path,
            settings: list[str], epochs: int | None = None) -> Row:
    """Train one row; ``settings`` are ``section.field=value`` overrides (YAML values); ``epochs`` (with
    ``minutes`` None) trains a fixed amount of work instead of a budget."""
    import yaml

    from virtualstain.training.config import config_from_dict, load_config
    from virtualstain.workflows.stain.train import train

    data = load_config(None if config_path == "defaults" else config_path).model_dump(mode="json")
    for setting in settings:
        key, value = setting.split("=", 1)
        section, name = key.split(".", 1)
        data[section][name] = yaml.safe_load(value)
    data["training"].update(seed=seed, progress_bar=False)
    if epochs:
        data["training"].update(max_epochs=epochs, early_stopping_patience=None)
    config = config_from_dict(data, "bench_learner")
    label = label_of(config_path, settings)
    run = out / "runs" / dataset / f"{label}_seed{seed}"
    started = time.perf_counter()
    result = train(manifest, run, config, max_minutes=minutes, log=lambda line: print(f"    {line}"))
    seconds = time.perf_counter() - started
    assert result.summary is not None and result.test is not None
    channels = result.test.channels
    nuclei = [s for s in channels.values() if s.readout == "nuclei" and s.objects is not None]
    return Row(dataset, label, seed,
               test_r=float(np.nanmean([s.pearson_r_mean for s in channels.values()])),
               ssim=float(np.nanmean([s.ssim_mean for s in channels.values()])),
               nuclei_count_error=nuclei[0].objects.count_error_total if nuclei else math.nan,  # type: ignore[union-attr]
               nuclei_f1=nuclei[0].objects.f1_mean if nuclei else math.nan,  # type: ignore[union-attr]
               epochs=result.summary.epochs, patches_per_second=result.summary.patches_per_second,
               train_seconds=round(seconds, 1), max_val_r_drop_after_5=round(max_drop_after(run / "log" / "metrics.csv"), 4),
               stop_reason=result.summary.stop_reason)


def table(rows: list[Row]) -> str:
    """Markdown: one line per dataset × config, mean ± half-range over seeds."""
    def stat(values: list[float], digits: int = 3) -> str:
        v = [x for x in values if not math.isnan(x)]
        if not v:
            return "–"
        return f"{np.mean(v):.{digits}f} ± {(max(v) - min(v)) / 2:.{digits}f}"

    lines = ["| dataset | config | seeds | test r | r spread (max−min) | SSIM | nuclei count error | nuclei F1 | "
             "epochs | patches/s | max val-r drop after epoch 5 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r.dataset, r.config) for r in rows}, key=lambda k: (DATASETS.index(k[0]) if k[0] in DATASETS else 99, k[1]))
    for dataset, config in keys:
        group = [r for r in rows if (r.dataset, r.config) == (dataset, config)]
        rs = [r.test_r for r in group]
        lines.append(f"| {dataset} | {config} | {len(group)} | {stat(rs)} | {max(rs) - min(rs):.3f} | "
                     f"{stat([r.ssim for r in group])} | {stat([r.nuclei_count_error for r in group])} | "
                     f"{stat([r.nuclei_f1 for r in group])} | {stat([float(r.epochs) for r in group], 1)} | "
                     f"{stat([r.patches_per_second for r in group], 1)} | "
                     f"{max(r.max_val_r_drop_after_5 for r in group):.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("VIRTUALSTAIN_DATA", "../shared/data"))
    ap.add_argument("--out", default="learner-study")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--configs", nargs="+", default=["defaults", "benchmarks/configs/landed_defaults.yaml"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--epochs", type=int, help="fixed work instead of a budget (equal work across configs)")
    ap.add_argument("--set", nargs="*", default=[], dest="settings", metavar="SECTION.FIELD=VALUE",
                    help="overrides applied to every config, e.g. training.loss=mae")
    args = ap.parse_args()
    import torch

    out, data = Path(args.out), Path(args.data_dir)
    record = out / "rows.json"
    rows = [Row(**r) for r in json.loads(record.read_text())] if record.exists() else []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"{f'{args.epochs} epochs' if args.epochs else f'budget {args.minutes} min'} per run")
    for dataset in args.datasets:
        manifest = write_manifest(dataset, data, out / "manifests")
        for config in args.configs:
            label = label_of(config, args.settings)
            for seed in args.seeds:
                if any((r.dataset, r.config, r.seed) == (dataset, label, seed) for r in rows):
                    continue
                print(f"{dataset} / {label} / seed {seed}", flush=True)
                row = run_one(dataset, manifest, config, seed, None if args.epochs else args.minutes, out,
                              args.settings, args.epochs)
                print(f"  test r {row.test_r:.3f}, SSIM {row.ssim:.3f}, epochs {row.epochs}, "
                      f"{row.patches_per_second} patches/s, max val-r drop {row.max_val_r_drop_after_5}", flush=True)
                rows.append(row)
                record.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    text = table(rows)
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
