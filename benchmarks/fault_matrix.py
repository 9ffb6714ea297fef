"""Bad inputs and faults against every command: do they exit 2 with one line, and leave inputs intact?

Not a test: a wider sweep than ``tests/test_faults_*.py`` (other files, flags and combinations), for
finding what the tests miss. Each case runs ``virtualstain.cli.main`` in this process and is judged by
three rules: the exit code is the expected one (2 for a user error); a refusal is one ``error: …`` line
(or click's usage ``Error: …``) on stderr with no traceback; no input file changed (new files beside
them are allowed) and no ``*.part`` file is left behind.

    python benchmarks/fault_matrix.py [--keep DIR]

Prints one line per case and the totals per command; exits 1 if any case breaks a rule.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Case:
    command: str
    name: str
    argv: list[str]
    expect: int = 2


def _digest(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fixtures(root: Path) -> dict[str, Path]:
    """Small real-format inputs: images, stacks, a phase map, labels, a manifest and a 1-epoch model."""
    from virtualstain.data.io import write_labels, write_tiff
    from virtualstain.data.phase_maps import write_phase_map
    from virtualstain.data.synthetic import write_dataset
    from virtualstain.training.config import config_from_dict
    from virtualstain.workflows.stain.train import train

    inp = root / "inputs"
    inp.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    blobs = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0) for cy, cx in ((20, 20), (60, 30), (40, 70)))
    f = {
        "img": write_tiff(inp / "img.tif", blobs[None].astype(np.float32), pixel_size_um=0.5),
        "nan": write_tiff(inp / "nan.tif", np.where(blobs > 0.5, np.nan, blobs)[None].astype(np.float32)),
        "const": write_tiff(inp / "const.tif", np.ones((1, 96, 96), np.float32)),
        "stack": write_tiff(inp / "stack.tif", (1 + 0.1 * np.stack([blobs, -blobs, 0.5 * blobs]))[:, None]
                            .astype(np.float32), pixel_size_um=0.5),
        "phase": write_phase_map(inp / "phase.tif", blobs, wavelength_um=0.55, pixel_size_um=0.5, method="test"),
        "labels": write_labels(inp / "labels.tif", (blobs > 0.5).astype(np.int32), pixel_size_um=0.5),
        "big4d": write_tiff(inp / "big4d.tif", rng.normal(size=(2, 3, 16, 16)).astype(np.float32)),
        "tiny": write_tiff(inp / "tiny.tif", (100 + rng.normal(size=(1, 8, 8))).astype(np.float32)),
    }
    (inp / "empty.tif").write_bytes(b"")
    (inp / "text.tif").write_text("not an image")
    (inp / "folder.tif").mkdir()
    f.update(empty=inp / "empty.tif", text=inp / "text.tif", folder=inp / "folder.tif")
    manifest = write_dataset(inp / "syn", n_fields=3, shape=(64, 64), seed=1, pixel_size_um=0.5)
    f["manifest"] = manifest
    config = config_from_dict({"model": {"architecture": "pics", "depth": 2, "base_width": 4},
                               "data": {"patch_size": [32, 32]},
                               "training": {"max_epochs": 1, "patches_per_epoch": 4, "batch_size": 4,
                                            "progress_bar": False, "early_stopping_patience": None}})
    f["model"] = train(manifest, root / "run", config).model_dir
    bad = inp / "manifests"
    bad.mkdir()
    rows = manifest.read_text().splitlines()
    rel = f"../syn/{rows[1].split(',')[0]}", f"../syn/{rows[1].split(',')[1]}"
    variants = {
        "no_target": "input\n" + rel[0] + "\n",
        "empty": "input,target\n",
        "bad_split": f"input,target,split\n{rel[0]},{rel[1]},training\n",
        "bad_scale": f"input,target,scale\n{rel[0]},{rel[1]},2.5\n",
        "missing_file": f"input,target\n{rel[0]},../syn/nothing.tif\n",
        "unknown_column": f"input,target,weight\n{rel[0]},{rel[1]},1\n",
        "duplicate": f"input,target\n{rel[0]},{rel[1]}\n{rel[0]},{rel[1]}\n",
        "nan_pixel_size": f"input,target,pixel_size_um\n{rel[0]},{rel[1]},nan\n",
        "negative_pixel_size": f"input,target,pixel_size_um\n{rel[0]},{rel[1]},-0.5\n",
    }
    for name, text in variants.items():
        (bad / f"{name}.csv").write_text(text)
        f[f"manifest_{name}"] = bad / f"{name}.csv"
    (bad / "utf16.csv").write_text(manifest.read_text(), encoding="utf-16")
    f["manifest_utf16"] = bad / "utf16.csv"
    configs = inp / "configs"
    configs.mkdir()
    for name, text in {"unknown": "training: {lrr: 0.1}\n", "list": "- 1\n- 2\n", "yaml_error": "training: [\n",
                       "inf_lr": "training: {lr: .inf}\n", "zero_minutes": "training: {max_minutes: 0}\n",
                       "bad_patch": "data: {patch_size: [0, -5]}\n", "devices": "training: {devices: 64}\n",
                       "gpu": "training: {accelerator: gpu}\n", "percentiles": "data: {percentiles: [99, 1]}\n"}.items():
        (configs / f"{name}.yaml").write_text(text)
        f[f"config_{name}"] = configs / f"{name}.yaml"
    broken = root / "broken_model"
    shutil.copytree(f["model"], broken)
    meta = json.loads((broken / "model.json").read_text())
    meta["normalization"]["target"].pop("method", None)
    (broken / "model.json").write_text(json.dumps(meta))
    f["broken_model"] = broken
    return f


def _cases(f: dict[str, Path], out: Path) -> list[Case]:
    s = {k: str(v) for k, v in f.items()}
    o = str(out)
    cases = []
    for key in ("empty", "text", "folder", "nan", "const", "big4d"):
        cases.append(Case("predict", f"{key} input", ["predict", s["model"], s[key], "--out", f"{o}/p_{key}"]))
    cases += [
        Case("predict", "missing input", ["predict", s["model"], f"{o}/none.tif", "--out", f"{o}/p"]),
        Case("predict", "not a bundle", ["predict", str(f["img"].parent), s["img"], "--out", f"{o}/p"]),
        Case("predict", "damaged model.json", ["predict", s["broken_model"], s["img"], "--out", f"{o}/p"]),
        Case("predict", "--tile-size -1", ["predict", s["model"], s["img"], "--out", f"{o}/p", "--tile-size", "-1"]),
        Case("predict", "--memory-mb 0", ["predict", s["model"], s["img"], "--out", f"{o}/p", "--memory-mb", "0"]),
        Case("predict", "--device foo", ["predict", s["model"], s["img"], "--out", f"{o}/p", "--device", "foo"]),
        Case("predict", "--input-channels 3", ["predict", s["model"], s["img"], "--out", f"{o}/p",
                                               "--input-channels", "3"]),
        Case("predict", "--out = inputs' folder --overwrite", ["predict", s["model"], s["img"], "--out",
                                                              str(f["img"].parent), "--overwrite"]),
        Case("predict", "same name twice", ["predict", s["model"], s["img"], s["img"], "--out", f"{o}/p"]),
        Case("predict", "ok", ["predict", s["model"], s["img"], "--out", f"{o}/p_ok"], expect=0),
    ]
    for key in ("empty", "text", "nan", "big4d"):
        cases.append(Case("segment", f"{key} image", ["segment", s[key], "--out", f"{o}/s_{key}"]))
    cases += [
        Case("segment", "--channel 4", ["segment", s["img"], "--out", f"{o}/s", "--channel", "4"]),
        Case("segment", "--out = its folder", ["segment", s["img"], "--out", str(f["img"].parent)]),
        Case("segment", "--pixel-size-um -1", ["segment", s["img"], "--out", f"{o}/s", "--pixel-size-um", "-1"]),
        Case("segment", "ok", ["segment", s["img"], "--out", f"{o}/s_ok"], expect=0),
        Case("evaluate", "odd count", ["evaluate", s["img"], s["img"], s["img"]]),
        Case("evaluate", "nan target", ["evaluate", s["img"], s["nan"]]),
        Case("evaluate", "empty target", ["evaluate", s["img"], s["empty"]]),
        Case("evaluate", "--readout x=blobs", ["evaluate", s["img"], s["img"], "--readout", "0=blobs"]),
        Case("evaluate", "--out is a file", ["evaluate", s["img"], s["img"], "--out", s["phase"]]),
        Case("evaluate", "ok", ["evaluate", s["img"], s["img"], "--out", f"{o}/e_ok"], expect=0),
        Case("focus", "2D image", ["focus", s["img"]]),
        Case("focus", "--n 0", ["focus", s["stack"], "--n", "0"]),
        Case("focus", "--out = the stack", ["focus", s["stack"], "--out", s["stack"]]),
        Case("focus", "--out x.png", ["focus", s["stack"], "--out", f"{o}/best.png"]),
        Case("focus", "--out is a folder", ["focus", s["stack"], "--out", s["folder"]]),
        Case("phase tie", "--out is a folder", ["phase", "tie", s["stack"], "--z-um", "-1,1,2", "--wavelength-um",
                                                "0.55", "--out", s["folder"]]),
        Case("drymass", "--out is a folder", ["drymass", s["phase"], "--labels", s["labels"], "--out",
                                              str(f["folder"].parent / "table.csv")], expect=0),
        Case("phase tie", "--z-um nan,1,2", ["phase", "tie", s["stack"], "--z-um", "nan,1,2", "--wavelength-um",
                                             "0.55", "--out", f"{o}/t.tif"]),
        Case("phase tie", "equal z", ["phase", "tie", s["stack"], "--z-um", "1,1,2", "--wavelength-um", "0.55",
                                      "--out", f"{o}/t.tif"]),
        Case("phase tie", "nm wavelength", ["phase", "tie", s["stack"], "--z-um", "-1,1,2", "--wavelength-um",
                                            "550", "--out", f"{o}/t.tif"]),
        Case("phase tie", "--regularization -1", ["phase", "tie", s["stack"], "--z-um", "-1,1,2", "--wavelength-um",
                                                  "0.55", "--regularization", "-1", "--out", f"{o}/t.tif"]),
        Case("phase tie", "--out = the stack", ["phase", "tie", s["stack"], "--z-um", "-1,1,2", "--wavelength-um",
                                                "0.55", "--out", s["stack"]]),
        Case("phase hologram", "text hologram", ["phase", "hologram", s["text"], "--wavelength-um", "0.633",
                                                 "--out", f"{o}/h.tif"]),
        Case("phase hologram", "tiny hologram", ["phase", "hologram", s["tiny"], "--wavelength-um", "0.633",
                                                 "--out", f"{o}/h.tif"]),
        Case("drymass", "no masks", ["drymass", s["phase"], "--out", f"{o}/m.csv"]),
        Case("drymass", "--alpha 5", ["drymass", s["phase"], "--labels", s["labels"], "--alpha", "5",
                                      "--out", f"{o}/m.csv"]),
        Case("drymass", "labels of another size", ["drymass", s["phase"], "--labels", s["big4d"], "--out",
                                                   f"{o}/m.csv"]),
        Case("drymass", "--out = the phase", ["drymass", s["phase"], "--labels", s["labels"], "--out", s["phase"]]),
        Case("drymass", "ok", ["drymass", s["phase"], "--labels", s["labels"], "--out", f"{o}/m_ok.csv"], expect=0),
        Case("simulate", "--defocus-um nan", ["simulate", "--synthetic", "1", "--defocus-um", "nan",
                                              "--wavelength-um", "0.55", "--pixel-size-um", "0.65", "--na", "0.25",
                                              "--out", f"{o}/sim"]),
        Case("simulate", "--na 2", ["simulate", "--synthetic", "1", "--wavelength-um", "0.55", "--pixel-size-um",
                                    "0.65", "--na", "2", "--out", f"{o}/sim2"]),
        Case("simulate", "constant phase map", ["simulate", s["const"], "--wavelength-um", "0.55", "--pixel-size-um",
                                                "0.5", "--na", "0.25", "--out", f"{o}/sim3"]),
        Case("info", "not a bundle", ["info", str(f["img"].parent)]),
        Case("info", "damaged model.json", ["info", s["broken_model"]]),
        Case("info", "ok", ["info", s["model"]], expect=0),
    ]
    for key in ("no_target", "empty", "bad_split", "bad_scale", "missing_file", "unknown_column", "duplicate",
                "nan_pixel_size", "negative_pixel_size", "utf16"):
        cases.append(Case("train", f"manifest {key}", ["train", s[f"manifest_{key}"], "--out", f"{o}/r_{key}"]))
    for key in ("unknown", "list", "yaml_error", "inf_lr", "zero_minutes", "bad_patch", "devices", "gpu",
                "percentiles"):
        cases.append(Case("train", f"config {key}", ["train", s["manifest"], "--out", f"{o}/c_{key}", "--config",
                                                     s[f"config_{key}"]]))
    cases.append(Case("train", "--max-minutes -1", ["train", s["manifest"], "--out", f"{o}/mm", "--max-minutes", "-1"]))
    sim = ["--wavelength-um", "0.55", "--pixel-size-um", "0.65", "--na", "0.25"]
    cases += [
        Case("train", "manifest is a folder", ["train", str(f["manifest"].parent), "--out", f"{o}/mf"]),
        Case("train", "--out is a file", ["train", s["manifest"], "--out", s["img"]]),
        Case("simulate", "--binning 0", ["simulate", "--synthetic", "1", "--binning", "0", *sim, "--out", f"{o}/s4"]),
        Case("simulate", "--noise -1", ["simulate", "--synthetic", "1", "--noise", "-1", *sim, "--out", f"{o}/s5"]),
        Case("simulate", "--coherence 2", ["simulate", "--synthetic", "1", "--coherence", "2", *sim, "--out", f"{o}/s6"]),
        Case("simulate", "--synthetic-peak-rad 3:1", ["simulate", "--synthetic", "1", "--synthetic-peak-rad", "3:1", *sim,
                                                      "--out", f"{o}/s7"]),
        Case("simulate", "nothing to simulate", ["simulate", *sim, "--out", f"{o}/s8"]),
        Case("drymass", "--interval-h 0", ["drymass", s["phase"], "--labels", s["labels"], "--interval-h", "0",
                                           "--out", f"{o}/m2.csv"]),
        Case("drymass", "only a nucleus mask", ["drymass", s["phase"], "--nucleus-mask", s["labels"], "--out",
                                                f"{o}/m3.csv"]),
        Case("drymass", "intensity image as phase", ["drymass", s["big4d"], "--labels", s["labels"], "--out",
                                                     f"{o}/m4.csv"]),
        Case("phase shifting", "3 frames", ["phase", "shifting", s["stack"], "--out", f"{o}/ps.tif"]),
        Case("phase qlsi", "reference of another size", ["phase", "qlsi", s["img"], "--reference", s["tiny"],
                                                         "--wavelength-um", "0.55", "--pitch-term-um", "1",
                                                         "--out", f"{o}/q.tif"]),
        Case("evaluate-sr", "--model without NAME=", ["evaluate-sr", s["manifest"], "--model", s["model"], "--out",
                                                      f"{o}/sr"]),
        Case("evaluate-sr", "model of another scale", ["evaluate-sr", s["manifest"], "--model", f"m={s['model']}",
                                                       "--out", f"{o}/sr2"]),
        Case("study", "--fractions 0", ["study", s["manifest"], "--out", f"{o}/st", "--fractions", "0"]),
        Case("study", "--epochs 0", ["study", s["manifest"], "--out", f"{o}/st2", "--epochs", "0"]),
        Case("study", "--minutes-per-fraction -1", ["study", s["manifest"], "--out", f"{o}/st3",
                                                    "--minutes-per-fraction", "-1"]),
        Case("demo", "--data missing", ["demo", "--out", f"{o}/d", "--data", f"{o}/nothing"]),
        Case("info", "weights missing", ["info", str(f["model"].parent / "nothing")]),
        Case("predict", "--precision fp16 on a CPU", ["predict", s["model"], s["img"], "--out", f"{o}/pf",
                                                      "--backend", "torch", "--precision", "fp16"]),
        Case("predict", "--max-deviation 2", ["predict", s["model"], s["img"], "--out", f"{o}/pm",
                                              "--max-deviation", "2"]),
        Case("predict", "--backend onnxruntime --precision bf16", ["predict", s["model"], s["img"], "--out",
                                                                   f"{o}/po", "--backend", "onnxruntime",
                                                                   "--precision", "bf16"]),
        Case("export", "--out of the wrong kind", ["export", s["model"], "--format", "onnx", "--out", f"{o}/m.zip"]),
        Case("export", "not a bundle", ["export", str(f["img"].parent), "--format", "onnx", "--out", f"{o}/m.onnx"]),
        Case("export", "ok onnx", ["export", s["model"], "--format", "onnx", "--out", f"{o}/ok.onnx"], expect=0),
        Case("watch", "inbox missing", ["watch", s["model"], f"{o}/no_inbox", "--out", f"{o}/w", "--once"]),
        Case("watch", "--out is the inbox", ["watch", s["model"], str(f["img"].parent), "--out",
                                             str(f["img"].parent), "--once"]),
        Case("watch", "--settle -1", ["watch", s["model"], str(f["img"].parent), "--out", f"{o}/w2", "--settle",
                                      "-1", "--once"]),
        Case("watch", "ok, bad files skipped", ["watch", s["model"], str(f["img"].parent), "--out", f"{o}/w3",
                                                "--once", "--settle", "0.05"], expect=0),
        Case("convert", "ok", ["convert", s["img"], "--out", f"{o}/plate.zarr"], expect=0),
        Case("convert", "--out not .zarr", ["convert", s["img"], "--out", f"{o}/plate.tif"]),
        Case("convert", "text file", ["convert", s["text"], "--out", f"{o}/plate2.zarr"]),
        Case("convert", "NaN image", ["convert", s["img"], s["nan"], "--out", f"{o}/plate3.zarr"]),
        Case("predict plate", "--out is the plate", ["predict", s["model"], f"{o}/plate.zarr", "--out",
                                                     f"{o}/plate.zarr"]),
        Case("predict plate", "--workers -1", ["predict", s["model"], f"{o}/plate.zarr", "--out", f"{o}/pp.zarr",
                                               "--workers", "-1"]),
        Case("predict plate", "two plates", ["predict", s["model"], f"{o}/plate.zarr", f"{o}/plate.zarr", "--out",
                                             f"{o}/pp2.zarr"]),
        Case("predict plate", "missing position", ["predict", s["model"], f"{o}/plate.zarr/B/9/0", "--out",
                                                   f"{o}/pp3.zarr"]),
        Case("register", "images of two sizes", ["register", s["model"], s["img"], s["tiny"], "--out", f"{o}/rg"]),
        Case("register", "missing fluorescence", ["register", s["model"], s["img"], f"{o}/none.tif", "--out",
                                                  f"{o}/rg2"]),
        Case("register", "--channel 5", ["register", s["model"], s["img"], s["img"], "--out", f"{o}/rg3", "--channel",
                                         "5"]),
        Case("register", "NaN fluorescence", ["register", s["model"], s["img"], s["nan"], "--out", f"{o}/rg4"]),
        Case("register", "ok", ["register", s["model"], s["img"], s["img"], "--out", f"{o}/rg5"], expect=0),
        Case("predict plate", "ok", ["predict", s["model"], f"{o}/plate.zarr", "--out", f"{o}/pp4.zarr"], expect=0),
    ]
    return cases


def run_case(case: Case, protected: Path) -> tuple[bool, str]:
    from virtualstain.cli import main

    before = _digest(protected)
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(case.argv)
        except SystemExit as exc:  # click's own usage errors
            code = int(exc.code or 0)
    text = err.getvalue()
    errors = [line for line in text.splitlines() if line.startswith(("error:", "Error:"))]  # ours, click's usage
    problems = []
    if code != case.expect:
        problems.append(f"exit {code}, expected {case.expect}")
    if case.expect == 2 and code == 2 and (len(errors) != 1 or "Traceback" in text):
        problems.append("not one error line")
    after = _digest(protected)
    if any(after.get(path) != digest for path, digest in before.items()):
        problems.append("an input changed")
    if list(protected.rglob("*.part*")):
        problems.append("a .part file was left")
    detail = errors[0][:110] if errors else (text.strip().splitlines() or [""])[-1][:110]
    return not problems, ("; ".join(problems) + " | " if problems else "") + detail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="work in this folder and keep it")
    args = parser.parse_args(argv)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="vs-faults-"))
    fixtures = _fixtures(root)
    cases = _cases(fixtures, root / "out")
    totals: Counter = Counter()
    failed: Counter = Counter()
    for case in cases:
        ok, detail = run_case(case, root / "inputs")
        totals[case.command] += 1
        failed[case.command] += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {case.command:15s} {case.name:34s} {detail}")
    print()
    for command in totals:
        print(f"{command:15s} {totals[command] - failed[command]:3d}/{totals[command]} handled")
    print(f"{'all':15s} {sum(totals.values()) - sum(failed.values()):3d}/{sum(totals.values())} handled")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if sum(failed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
