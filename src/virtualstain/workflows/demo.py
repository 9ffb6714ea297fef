"""``virtualstain demo``: train on synthetic (or given) data, predict, evaluate, report — in minutes on a CPU."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .._atomic import ensure_writable_dir, write_text_atomic
from ..data.synthetic import write_dataset
from ..errors import UserError
from .config import config_from_dict
from .evaluate import evaluate_files
from .predict import predict_files
from .train import train


def _manifest_for(data: Path, workdir: Path) -> Path:
    """A manifest from ``--data``: a CSV, a folder with ``manifest.csv``, or the shared data root (FRM set)."""
    if data.is_file():
        return data
    if (data / "manifest.csv").exists():
        return data / "manifest.csv"
    frm = data / "frm_phase_hoechst" if (data / "frm_phase_hoechst").exists() else data
    if (frm / "phase.tif").exists() and (frm / "hoechst.tif").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        manifest = workdir / "manifest.csv"
        rel = os.path.relpath(frm, workdir)
        manifest.write_text(f"input,target\n{rel}/phase.tif,{rel}/hoechst.tif\n", encoding="utf-8")
        return manifest
    raise UserError(f"{data}: --data needs a manifest CSV, a folder with manifest.csv, or the shared data folder "
                    "(with frm_phase_hoechst/)")


def run_demo(out: str | os.PathLike = "virtualstain-demo", data: str | os.PathLike | None = None,
             minutes: float = 1.5, seed: int = 0, progress: bool = True) -> dict:
    """Train, predict, evaluate and write ``out/report.md``; returns the summary.

    Parameters
    ----------
    out : path
        Output folder.
    data : path, optional
        Real data instead of the synthetic generator (see :func:`_manifest_for`).
    minutes : float
        Training budget (wall clock).
    """
    started = time.perf_counter()
    out = ensure_writable_dir(out)
    if data is None:
        manifest = write_dataset(out / "data", n_fields=6, shape=(256, 256), seed=seed, modality="phase")
        source = f"synthetic phase images of cells (6 fields of 256×256 px, seed {seed})"
    else:
        manifest = _manifest_for(Path(data), out / "data")
        source = str(manifest)
    config = config_from_dict({
        "model": {"architecture": "pics"},
        "data": {"patch_size": [128, 128], "min_signal_fraction": 0.02},
        "training": {"batch_size": 8, "patches_per_epoch": 96, "max_epochs": 200, "seed": seed,
                     "early_stopping_patience": 30, "progress_bar": progress},
    })
    result = train(manifest, out / "run", config, max_minutes=minutes, fresh=True)
    test_dir = out / "run" / "test"
    preds = sorted((test_dir / "input").glob("*.tif"))
    predicted = predict_files(result.model_dir, preds, out / "predictions", composite=True, overwrite=True,
                              progress=progress)
    evaluation = evaluate_files(predicted, [test_dir / "target" / p.name for p in predicted], out / "evaluation",
                                inputs=preds, title=f"virtualstain demo: {source}")
    channels = evaluation.summary["channels"]
    summary = {
        "data": source, "split": result.summary["split"], "epochs": result.summary["epochs"],
        "training_seconds": result.summary["seconds_this_session"],
        "test_pearson_r": {c: entry["pearson_r_mean"] for c, entry in channels.items()},
        "verdicts": {c: entry["verdicts"] for c, entry in channels.items()},
        "total_seconds": round(time.perf_counter() - started, 1),
        "model": str(result.model_dir), "predictions": str(out / "predictions"),
        "report": str(out / "evaluation" / "report.html"),
    }
    icons = {"good": "✔", "caution": "⚠", "poor": "✘", "undefined": "–"}
    lines = [
        "# virtualstain demo report", "",
        f"- Data: {source}", f"- Split: {summary['split']}",
        f"- Model: `pics` U-Net, {summary['epochs']} epochs in {summary['training_seconds']} s "
        f"({result.summary['patches_per_second']} patches/s); bundle at `{result.model_dir}`",
        f"- Total time: {summary['total_seconds']} s",
        "- Full report with images and plots: `evaluation/report.html` (open it in a browser)", "",
        "## Verdicts on the held-out test images", "",
        *[f"- {icons[v['status']]} **{c}, {v['readout']}**: {v['text']}" for c, vs in summary["verdicts"].items()
          for v in vs], "",
        "## Pearson r per image and stain", "",
        "| image | stain | Pearson r |", "|---|---|---|",
        *[f"| {r['image']} | {r['channel']} | {r['pearson_r']:.3f} |" for r in evaluation.rows], "",
        "Composites (grey = input, green/magenta = predicted stains): "
        + ", ".join(f"`{p.with_suffix('.png').name}`" for p in predicted), "",
    ]
    write_text_atomic(out / "report.md", "\n".join(lines))
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False))
    return summary
