"""``virtualstain demo``: train on synthetic (or given) data, predict, evaluate, report — in minutes on a CPU."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._atomic import ensure_writable_dir, write_text_atomic
from ...analysis.compartments import CompartmentAgreement, compartment_agreement
from ...analysis.readouts import readout_for
from ...data.io import read_image
from ...data.synthetic import write_dataset
from ...errors import UserError
from ...evaluation.types import Evaluation
from ...training.config import config_from_dict
from .evaluate import write_evaluation
from .held_out import HeldOut
from .predict import write_prediction
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


#: The synthetic phase maps are in radians; their dry mass is quoted for this wavelength (µm).
SYNTHETIC_WAVELENGTH_UM = 0.55
#: Epochs of the demo by default: a fixed amount of work, so a busy and an idle machine train the same model
#: (≈ 1.5 minutes of training on 2 CPU cores with bf16, ≈ 2.5 without).
DEMO_EPOCHS = 24


def _nuclei_channel(names: list[str]) -> int:
    """The first channel whose name reads out as nuclei (else 0)."""
    return next((i for i, name in enumerate(names) if readout_for(name) == "nuclei"), 0)


def _dry_mass_readout(held_out: list[HeldOut], names: list[str], phase_folder: Path) -> CompartmentAgreement:
    """PICS: nuclear vs cytoplasmic dry mass on the fields' phase maps (``phase_folder/field_NNN.tif``, field i
    being sample i), with nuclei segmented in the real and in the virtual nuclear stain."""
    c = _nuclei_channel(names)
    plane = (lambda a: a.reshape(-1, *a.shape[-2:]))  # noqa: E731  (Z planes of a volume become channels)
    phases = [read_image(phase_folder / f"field_{h.region.sample:03d}.tif")[0] for h in held_out]
    phases = [p.reshape(1, *p.shape[-2:])[h.region.slices()] for p, h in zip(phases, held_out)]
    return compartment_agreement([plane(p)[0].astype(np.float64) for p in phases],
                                 [plane(h.target)[c].astype(np.float64) for h in held_out],
                                 [plane(h.prediction)[c].astype(np.float64) for h in held_out],
                                 pixel_size_um=held_out[0].pixel_size_um or 1.0, wavelength_um=SYNTHETIC_WAVELENGTH_UM)


def _dry_mass_lines(dry_mass: CompartmentAgreement | None) -> list[str]:
    if not dry_mass:
        return []
    return [
        "## Dry mass of nuclei and cytoplasm (PICS)", "",
        f"On the fields' phase maps (λ = {SYNTHETIC_WAVELENGTH_UM} µm, α = 0.18 mL/g), nuclei segmented in the real and "
        "in the virtual nuclear stain (predicted from bright field); cells = phase foreground.", "",
        f"- Matched nuclei: {dry_mass.matched_nuclei}; their dry mass real vs virtual: "
        f"r = {dry_mass.nucleus_mass_r:.3f}, median error {100 * dry_mass.nucleus_mass_median_error:+.1f} %",
        f"- Total nuclear mass {100 * dry_mass.total_nucleus_error:+.1f} %, cytoplasmic mass "
        f"{100 * dry_mass.total_cytoplasm_error:+.1f} % (virtual vs real)",
        f"- Nuclear/cytoplasmic mass ratio: real {dry_mass.nc_ratio_real:.3f}, virtual "
        f"{dry_mass.nc_ratio_virtual:.3f}", "",
    ]


@dataclass
class DemoResult:
    """What ``virtualstain demo`` produced; :meth:`to_dict` is its ``summary.json``.

    Attributes
    ----------
    data, split : str
        Where the images came from, and how they were split.
    epochs : int
        Epochs trained.
    training_seconds, total_seconds : float
        Wall time of the training session and of the whole demo, s.
    patches_per_second : float
        Training throughput.
    model, predictions, report : Path
        The bundle, the predictions' folder, the HTML report.
    evaluation : Evaluation
        The judgement of the held-out test images.
    dry_mass : CompartmentAgreement or None
        Nuclear vs cytoplasmic dry mass (synthetic phase data only; see :func:`_dry_mass_readout`).
    """

    data: str
    split: str
    epochs: int
    training_seconds: float
    total_seconds: float
    patches_per_second: float
    model: Path
    predictions: Path
    report: Path
    evaluation: Evaluation
    dry_mass: CompartmentAgreement | None

    def to_dict(self) -> dict:
        channels = self.evaluation.channels
        return {
            "data": self.data, "split": self.split, "epochs": self.epochs, "training_seconds": self.training_seconds,
            "test_pearson_r": {c: s.pearson_r_mean for c, s in channels.items()},
            "verdicts": {c: [v.to_dict() for v in s.verdicts] for c, s in channels.items()},
            "total_seconds": self.total_seconds, "model": str(self.model), "predictions": str(self.predictions),
            "report": str(self.report), "dry_mass": self.dry_mass.to_dict() if self.dry_mass else None,
        }


_ICONS = {"good": "✔", "caution": "⚠", "poor": "✘", "undefined": "–"}


def _report_lines(demo: DemoResult, predicted: list[Path]) -> list[str]:
    """The text of ``report.md``."""
    return [
        "# virtualstain demo report", "",
        f"- Data: {demo.data}", f"- Split: {demo.split}",
        f"- Model: `pics` U-Net, {demo.epochs} epochs in {demo.training_seconds} s "
        f"({demo.patches_per_second} patches/s); bundle at `{demo.model}`",
        f"- Total time: {demo.total_seconds} s",
        "- Full report with images and plots: `evaluation/report.html` (open it in a browser)", "",
        "## Verdicts on the held-out test images", "",
        *[f"- {_ICONS[v.status]} **{c}, {v.readout}**: {v.text}" for c, s in demo.evaluation.channels.items()
          for v in s.verdicts], "",
        "## Pearson r per image and stain", "",
        "| image | stain | Pearson r |", "|---|---|---|",
        *[f"| {r.image} | {r.channel} | {r.pixels.pearson_r:.3f} |" for r in demo.evaluation.rows], "",
        "Composites (grey = input, green/magenta = predicted stains): "
        + ", ".join(f"`{p.with_suffix('.png').name}`" for p in predicted), "",
        *_dry_mass_lines(demo.dry_mass),
    ]


def run_demo(out: str | os.PathLike = "virtualstain-demo", data: str | os.PathLike | None = None,
             minutes: float | None = None, seed: int = 0, progress: bool = True,
             epochs: int = DEMO_EPOCHS) -> DemoResult:
    """Train, predict, evaluate and write ``out/report.md`` and ``out/summary.json``.

    The synthetic task: bright-field images of cells, 1 µm out of focus (the input alone is a weak predictor
    of the stains), to nuclear and membrane stains; the model must earn its verdicts against that baseline.

    Parameters
    ----------
    out : path
        Output folder.
    data : path, optional
        Real data instead of the synthetic generator (see :func:`_manifest_for`).
    minutes : float, optional
        Train to this wall-clock budget instead of a fixed number of epochs (a busy machine then gets a
        worse model).
    epochs : int
        Train exactly this many epochs (no time budget, no early stopping): the same model however busy the
        machine is.

    Returns
    -------
    DemoResult
    """
    started = time.perf_counter()
    out = ensure_writable_dir(out)
    if data is None:
        manifest = write_dataset(out / "data", n_fields=6, shape=(256, 256), seed=seed, modality="brightfield")
        source = f"synthetic bright-field images of cells, 1 µm defocus (6 fields of 256×256 px, seed {seed})"
    else:
        manifest = _manifest_for(Path(data), out / "data")
        source = str(manifest)
    config = config_from_dict({
        "model": {"architecture": "pics"},
        # every setting fixed (as measured for the demo's verdicts), none left on auto
        "data": {"patch_size": [128, 128], "min_signal_fraction": 0.02, "intensity_augmentation": False},
        "training": {"batch_size": 8, "patches_per_epoch": 128, "max_epochs": None if minutes else epochs,
                     "seed": seed, "early_stopping_patience": 30 if minutes else None, "progress_bar": progress},
    })
    result = train(manifest, out / "run", config, max_minutes=minutes, fresh=True)
    if result.summary is None or result.test is None or result.bundle is None:
        raise UserError(f"{manifest}: the data left no test region to demonstrate on; give more fields of view")
    bundle = result.bundle
    held_out = sorted(result.held_out, key=lambda h: h.name)
    predicted = [write_prediction(out / "predictions" / f"{h.name}.tif", bundle, h.prediction, source=f"{h.name}.tif",
                                  pixel_size_um=h.pixel_size_um, composite_of=h.input) for h in held_out]
    evaluation = result.test
    evaluation.out = write_evaluation(evaluation, out / "evaluation", title=f"virtualstain demo: {source}")
    dry_mass = _dry_mass_readout(held_out, bundle.output_channel_names, out / "data" / "phase") if data is None else None
    demo = DemoResult(data=source, split=result.summary.split, epochs=result.summary.epochs,
                      training_seconds=result.summary.seconds_this_session,
                      total_seconds=round(time.perf_counter() - started, 1),
                      patches_per_second=result.summary.patches_per_second, model=result.model_dir,
                      predictions=out / "predictions", report=out / "evaluation" / "report.html",
                      evaluation=evaluation, dry_mass=dry_mass)
    write_text_atomic(out / "report.md", "\n".join(_report_lines(demo, predicted)))
    write_text_atomic(out / "summary.json", json.dumps(demo.to_dict(), indent=2, ensure_ascii=False))
    return demo
