"""The ``virtualstain`` command: thin wrappers that parse arguments and call the API.

Exit codes: 0 success, 2 user error (one line naming the file and the fix), 1 bug.
"""

from __future__ import annotations

import errno
import json
import sys
import traceback
import warnings
from pathlib import Path
from typing import Literal

import click

from ._version import __version__
from .errors import Interrupted, UserError


def _channels(text: str | None) -> list[int] | None:
    from .data.samples import parse_channels

    return parse_channels(text, "--input-channels")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="virtualstain")
def cli() -> None:
    """Learn, apply and judge virtual stains for label-free microscopy."""


@cli.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (model/, log/, test/).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (defaults if omitted).")
@click.option("--max-minutes", type=float, help="Wall-clock training budget in minutes.")
@click.option("--fresh", is_flag=True, help="Discard an interrupted run in --out instead of resuming it.")
@click.option("--init", "init", type=click.Path(), help="Start from this trained model (fine-tuning; same "
              "architecture and channels).")
@click.option("--check-registration", is_flag=True, help="First flag pairs whose fluorescence is misaligned with "
              "its label-free image by more than 1 px (registration by prediction with a short preliminary model).")
@click.option("--ensemble", type=int, help="Train K networks with seeds seed … seed + K − 1 (the budget shared "
              "among them); predict --uncertainty adds their spread to σ.")
def train(manifest: str, out: str, config_path: str | None, max_minutes: float | None, fresh: bool,
          init: str | None, check_registration: bool, ensemble: int | None) -> None:
    """Train a model on the paired images listed in MANIFEST.csv."""
    from .training.config import config_from_dict, load_config

    config = load_config(config_path)  # a bad config or budget is refused before torch loads (seconds)
    if max_minutes is not None:
        config.training.max_minutes = max_minutes
    if ensemble is not None:
        config = config_from_dict({**config.model_dump(mode="json"),
                                   "training": {**config.training.model_dump(mode="json"), "ensemble": ensemble}},
                                  "--ensemble")
    from .workflows.stain.train import train as run_train

    result = run_train(manifest, out, config, fresh=fresh, log=click.echo, init=init,
                       check_registration=check_registration)
    s = result.summary
    if s is None:  # a non-zero DDP rank: rank 0 reports
        return
    if result.finished_before:
        click.echo(f"{out}: this run already finished ({s.epochs} epochs, {s.stop_reason or 'done'}); nothing to do "
                   "— raise training.max_epochs or --max-minutes to train on, or pass --fresh to start again")
    click.echo(f"model: {result.model_dir}")
    click.echo(f"split: {s.split}")
    click.echo(f"epochs: {s.epochs}, {s.seconds_this_session} s, {s.patches_per_second} patches/s")
    for name, value in s.validation_pearson_r.items():
        click.echo(f"validation r [{name}]: {value:.4f}")
    for name, value in s.test_pearson_r.items():
        click.echo(f"test r [{name}]: {value:.4f}")


@cli.command()
@click.argument("model", type=click.Path())
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--tile-size", type=int, default=None, help="Tile core in px (0 = whole image; default from memory).")
@click.option("--input-channels", help="Channels/planes of each input to use, e.g. 0,3 (default: as trained).")
@click.option("--tta", is_flag=True, help="Average over flips and 90° rotations.")
@click.option("--no-rescale", is_flag=True, help="Refuse images of another pixel size than the model's instead of "
              "resampling them to it (and the prediction back).")
@click.option("--overwrite", is_flag=True, help="Redo outputs that already exist.")
@click.option("--composite", is_flag=True, help="Also write a colour PNG of input and predicted stains.")
@click.option("--device", help="cpu, cuda, cuda:1… (default: CUDA if available).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "openvino"]), default="auto",
              show_default=True, help="Inference engine; auto: the fastest installed one that matches fp32 torch "
              "(measured once per model and machine).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="Arithmetic; --backend torch --precision fp32 is the reference.")
@click.option("--max-deviation", type=float, default=1e-3, show_default=True,
              help="Largest deviation from fp32 torch (fraction of the output range) that auto accepts.")
@click.option("--explain", is_flag=True, help="Print every engine measured for --backend auto and why one was chosen.")
@click.option("--workers", type=int, help="OME-Zarr plates: a local dask cluster of this many workers (default: this "
              "process, torch on every core).")
@click.option("--scheduler", help="OME-Zarr plates: address of an existing dask scheduler (e.g. tcp://host:8786).")
@click.option("--memory-mb", type=float, help="Memory budget per tile in MB.")
@click.option("--match-brightness", is_flag=True, help="Scale each input to the training inputs' mean grey level "
              "(DL-SRQPI brightness correction; other lamp power, exposure or gain).")
@click.option("--border", type=click.Choice(["mirror", "none"]), default="mirror", show_default=True,
              help="What the network sees beyond the image's edges: the image mirrored, or zeros (as 0.1.0).")
@click.option("--stitch", type=click.Choice(["exact", "blend"]), default="exact", show_default=True,
              help="exact: tiles equal whole-image prediction; blend: VirFluoNet's alpha-blended windows "
              "(--tile-size px, default 256).")
@click.option("--blend-overlap", type=int, default=32, show_default=True, help="Overlap of blended windows, px.")
@click.option("--uncertainty", is_flag=True, help="Also write NAME_sigma.tif: the calibrated per-pixel σ from the "
              "spread of the 8 flipped/rotated predictions (turns --tta on).")
@click.option("--ood-map", is_flag=True, help="Also write NAME_ood.tif: how far each tile lies from the model's "
              "training inputs (score, then brightness, contrast, texture, features; > 1: outside).")
@click.option("--no-ood-check", is_flag=True, help="Skip the check of each input against the training domain.")
def predict(model: str, inputs: tuple[str, ...], out: str, tile_size: int | None, input_channels: str | None,
            tta: bool, no_rescale: bool, overwrite: bool, composite: bool, device: str | None, backend: str,
            precision: str, max_deviation: float, explain: bool, workers: int | None, scheduler: str | None,
            memory_mb: float | None, match_brightness: bool, border: Literal["mirror", "none"],
            stitch: Literal["exact", "blend"], blend_overlap: int, uncertainty: bool, ood_map: bool,
            no_ood_check: bool) -> None:
    """Predict stains for INPUTS with the bundle MODEL; outputs keep the inputs' names.

    Every input is checked against the images the model was trained on: one mostly unlike them gets a warning
    naming what differs (brightness, contrast, texture/scale, the network's features) and the fix.
    """
    from .inference.backend_choice import last_choice
    from .inference.options import PredictOptions
    from .models.bundle import load_bundle
    from .workflows.stain.predict import predict_files

    options = PredictOptions(tile_size=tile_size, tta=tta, rescale=not no_rescale, device=device,
                             memory_budget_mb=memory_mb, backend=backend, precision=precision,
                             max_deviation=max_deviation, match_brightness=match_brightness,
                             border=border, stitch=stitch, blend_overlap=blend_overlap, progress=sys.stderr.isatty())
    bundle = load_bundle(model)
    from .data.ome_zarr import is_ome_zarr, split_position

    if any(is_ome_zarr(split_position(p)[0]) for p in inputs):
        if len(inputs) != 1:
            raise UserError("give one OME-Zarr plate (or position) at a time; its predictions go to the plate --out")
        if not out.rstrip("/").endswith(".zarr"):
            raise UserError(f"{out}: --out must end in .zarr (a plate of predictions is written); e.g. --out pred.zarr")
        from .workflows.stain.predict_plate import predict_plate

        if uncertainty or ood_map:
            raise UserError("--uncertainty and --ood-map write TIFFs beside each prediction; give image files, "
                            "not an OME-Zarr plate")

        written_positions = predict_plate(model, inputs[0], out, options, workers=workers, scheduler=scheduler,
                                          log=click.echo)
        click.echo(f"{len(written_positions)} position(s) predicted into {out}")
        return
    written = predict_files(bundle, inputs, out, options, input_channels=_channels(input_channels),
                            overwrite=overwrite, composite=composite, uncertainty=uncertainty, ood_map=ood_map,
                            check_domain=not no_ood_check)
    choice = last_choice(bundle)
    if choice is not None:
        for line in choice.explain() if explain else [choice.summary()]:
            click.echo(line)
    for path in written.removed_parts:
        click.echo(f"removed {path} (left by an interrupted run)")
    for path, reason in written.redone.items():
        click.echo(f"redid {path}: {reason}")
    notes = [f"{len(written.skipped)} up to date, skipped"] if written.skipped else []
    notes += [f"{len(written.redone)} redone"] if written.redone else []
    click.echo(f"{len(written)} prediction(s) in {out}" + (f" ({'; '.join(notes)})" if notes else ""))


def _readouts(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, kind = item.rpartition("=")
        if not sep or not name:
            raise UserError(f"--readout {item!r}: write CHANNEL=KIND, e.g. --readout hoechst=nuclei")
        out[name] = kind
    return out


@cli.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Study folder.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (defaults if omitted).")
@click.option("--fractions", default="0.25,0.5,1", show_default=True, help="Shares of the training data.")
@click.option("--epochs", default="2,5,10", show_default=True, help="Epoch counts at which each run is judged.")
@click.option("--minutes-per-fraction", type=float, help="Wall-clock budget of each fraction's run.")
def study(manifest: str, out: str, config_path: str | None, fractions: str, epochs: str,
          minutes_per_fraction: float | None) -> None:
    """Train from scratch on growing shares of the training data and epochs; plot r, P and count error."""
    from .training.config import load_config
    from .workflows.stain.study import run_study

    rows = run_study(manifest, out, load_config(config_path), fractions=fractions.split(","),
                     epochs=epochs.split(","), minutes_per_fraction=minutes_per_fraction, log=click.echo)
    click.echo(f"{len(rows)} result row(s): {out}/study.csv, {out}/study.html")


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), help="Folder for metrics.csv, summary.json and report.html.")
@click.option("--inputs", "inputs", multiple=True, type=click.Path(),
              help="Label-free inputs (a folder, or one file per prediction; repeat) for the input-vs-target baseline.")
@click.option("--pixel-size-um", type=float, help="µm per pixel (default: from the files, else lengths in px).")
@click.option("--readout", "readouts", multiple=True,
              help="CHANNEL=nuclei|cells|none (default: by channel name, e.g. DAPI/Hoechst → nuclei).")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@click.option("--segmenter", type=click.Choice(["classical", "learned", "cellpose"]),
              help="How nuclei channels are segmented (default: classical; the learned segmenter splits the "
                   "smoother nuclei of virtual stains, see README; cellpose if installed). The report also shows "
                   "where the classical and the learned (or cellpose) segmenter disagree on each real stain.")
def evaluate(files: tuple[str, ...], out: str | None, inputs: tuple[str, ...], pixel_size_um: float | None,
             readouts: tuple[str, ...], no_report: bool, segmenter: str | None) -> None:
    """Judge predictions against real stains: FILES are PRED... TARGET... (as many of each, or two folders).

    Targets pair with predictions in order (folders: by file name); join several single-stain target
    files with ';'. Prints a verdict per readout; with --out writes metrics.csv, summary.json, report.html.
    """
    from .workflows.stain.evaluate import evaluate_files

    if len(files) % 2:
        raise UserError(f"evaluate needs as many targets as predictions (PRED... TARGET...), got {len(files)} paths")
    half = len(files) // 2
    result = evaluate_files(list(files[:half]), list(files[half:]), out, inputs=list(inputs) or None,
                            pixel_size_um=pixel_size_um, readouts=_readouts(readouts), report=not no_report,
                            nuclei_method=segmenter)
    for r in result.rows:
        if r.note:
            click.echo(f"{r.image}\t{r.channel}\t{r.note}")
    icons = {"good": "ok  ", "caution": "warn", "poor": "POOR", "undefined": "n/a "}
    for name, s in result.channels.items():
        for v in s.verdicts:
            click.echo(f"[{icons[v.status]}] {name} {v.readout}: {v.text}")
    if result.out:
        click.echo(f"report: {result.out / ('report.html' if not no_report else 'summary.json')}")


@cli.command()
@click.argument("images", nargs=-1, metavar="IMAGES...", type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the label TIFFs.")
@click.option("--pixel-size-um", type=float,
              help="µm per pixel (default: from the file, else lengths are scaled to the nuclei in the image).")
@click.option("--smooth-um", type=float, help="Gaussian σ before thresholding [1 µm; no pixel size: 5 % of d].")
@click.option("--split-depth-um", type=float,
              help="Distance-map maxima at least this deep become nuclei; larger splits less [0.5 µm; 2 % of d].")
@click.option("--min-area-um2", type=float,
              help="Smaller objects are dropped [20 µm²; no pixel size: 5 % of a disc of diameter d].")
@click.option("--channel", default=0, show_default=True, type=int, help="Channel of multi-channel images.")
@click.option("--method", type=click.Choice(["classical", "learned", "cellpose"]),
              help="classical: threshold + distance watershed (lengths below); learned: the shipped U-Net, sized "
                   "to the nuclei of each image; cellpose: cellpose's nuclei model at that size (needs the cellpose "
                   "package) [default: the package's default method, see README].")
@click.option("--track", "track_too", is_flag=True,
              help="IMAGES are the frames of a time-lapse, in order: also link the nuclei into tracks and write "
                   "the Cell Tracking Challenge result (maskTTT.tif, res_track.txt) into OUT/tracks.")
@click.option("--cells", "cells_stain", type=click.Path(),
              help="Instead of IMAGES: a cytoplasm or membrane stain (real or virtual) whose cells grow from the "
                   "--nuclei; writes OUT/<stem>_cells.tif, _nuclei.tif, _cytoplasm.tif (cell k contains nucleus k).")
@click.option("--nuclei", "nuclei_file", type=click.Path(),
              help="With --cells: the same field's nuclear stain (segmented as IMAGES are) or its label TIFF.")
@click.option("--cell-stain", type=click.Choice(["cytoplasm", "membrane"]), default="cytoplasm", show_default=True,
              help="With --cells: bright over the whole cell (cytoplasm) or bright cell outlines (membrane).")
def segment(images: tuple[str, ...], out: str, pixel_size_um: float | None, smooth_um: float | None,
            split_depth_um: float | None, min_area_um2: float | None, channel: int, method: str | None, track_too: bool,
            cells_stain: str | None, nuclei_file: str | None, cell_stain: Literal["cytoplasm", "membrane"]) -> None:
    """Segment nuclei in IMAGES; one instance-label TIFF (0 = background) per image, same file name.

    With --cells STAIN --nuclei NUCLEI (no IMAGES): the cells of one field, seeded by its nuclei.

    d is the typical nucleus diameter estimated from each image when no pixel size is known; lengths given
    without a pixel size are in pixels.
    """
    if cells_stain is not None or nuclei_file is not None:
        _segment_cells(images, out, cells_stain, nuclei_file, cell_stain, track_too, pixel_size_um=pixel_size_um,
                       smooth_um=smooth_um, split_depth_um=split_depth_um, min_area_um2=min_area_um2, channel=channel)
        return
    if not images:  # IMAGES may be left out only with --cells: else click's own message for a required argument
        ctx = click.get_current_context()
        raise click.MissingParameter(ctx=ctx, param=next(p for p in ctx.command.params if p.name == "images"))
    from .workflows.stain.segment import segment_files

    written = segment_files(images, out, pixel_size_um=pixel_size_um, smooth_um=smooth_um,
                            split_depth_um=split_depth_um, min_area_um2=min_area_um2, channel=channel,
                            method=method)
    for item in written:
        click.echo(f"{item.labels}\t{item.count} nuclei\t({item.how})")
    if track_too:
        from .workflows.stain.track import track_files

        click.echo(track_files([item.labels for item in written], Path(out) / "tracks").line())


def _segment_cells(images: tuple[str, ...], out: str, cells_stain: str | None, nuclei_file: str | None,
                   cell_stain: Literal["cytoplasm", "membrane"], track_too: bool, **lengths) -> None:
    """``segment --cells STAIN --nuclei NUCLEI``: refuse mixed modes, then write the three label files."""
    if cells_stain is None:
        raise UserError(f"{nuclei_file}: --nuclei needs --cells STAIN.tif (the cytoplasm or membrane stain of the "
                        "same field); to segment nuclei only, give the image as IMAGES")
    if nuclei_file is None:
        raise UserError(f"{cells_stain}: --cells needs --nuclei NUCLEI.tif (the same field's nuclear stain or its "
                        "label TIFF)")
    if images:
        raise UserError(f"{images[0]}: give either IMAGES (nuclei) or --cells with --nuclei (one field), not both; "
                        "run segment twice")
    if track_too:
        raise UserError(f"{cells_stain}: --track links nuclei through IMAGES; it does not apply to --cells")
    from .workflows.stain.segment_cells import segment_cells_files

    click.echo(segment_cells_files(cells_stain, nuclei_file, out, kind=cell_stain, **lengths).line())


@cli.command()
@click.argument("labels", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the CTC result: maskTTT.tif (track labels) and res_track.txt.")
@click.option("--max-distance-px", type=float, help="Largest move, gap jump or mother-daughter distance, pixels "
              "(default: one median nucleus diameter).")
@click.option("--gap-frames", default=2, show_default=True, type=int,
              help="Most consecutive frames a nucleus may be missing and still be linked (0 = none).")
@click.option("--no-divisions", is_flag=True, help="Do not detect divisions.")
@click.option("--ground-truth", type=click.Path(file_okay=False),
              help="A CTC ground-truth folder (TRA/ or tra/ with man_track.txt, optionally SEG/ or seg/): print "
                   "DET, SEG, TRA, LNK (py-ctcmetrics) and the link F1 of the result.")
def track(labels: tuple[str, ...], out: str, max_distance_px: float | None, gap_frames: int,
          no_divisions: bool, ground_truth: str | None) -> None:
    """Track nuclei through LABELS (label TIFFs in frame order, or one (T, Y, X) stack) with laptrack; writes
    the Cell Tracking Challenge format."""
    from .workflows.stain.track import track_files

    click.echo(track_files(labels, out, max_distance_px=max_distance_px, gap_frames=gap_frames,
                           divisions=not no_divisions).line())
    if ground_truth:
        from .evaluation.tracking_scores import score_tracking

        s = score_tracking(out, ground_truth)
        def f(v: float | None) -> str:
            return "–" if v is None else f"{v:.4f}"
        click.echo(f"DET {f(s.det)}  SEG {f(s.seg)}  TRA {f(s.tra)}  LNK {f(s.lnk)}  link F1 {s.link_f1:.4f} "
                   f"(P {s.link_precision:.4f}, R {s.link_recall:.4f})  divisions {s.n_divisions} of "
                   f"{s.n_reference_divisions}, tracks {s.n_tracks} of {s.n_reference_tracks}")


@cli.command()
@click.argument("model", type=click.Path())
@click.argument("inbox", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "openvino"]), default="auto",
              show_default=True, help="Inference engine (as for predict).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="Arithmetic (as for predict).")
@click.option("--max-deviation", type=float, default=1e-3, show_default=True,
              help="Largest deviation from fp32 torch that auto accepts.")
@click.option("--device", help="cpu, cuda, cuda:1… (default: CUDA if available).")
@click.option("--tile-size", type=int, default=None, help="Tile core in px (0 = whole image; default from memory).")
@click.option("--tta", is_flag=True, help="Average over flips and 90° rotations (8× the work).")
@click.option("--no-rescale", is_flag=True, help="Refuse images of another pixel size instead of resampling them.")
@click.option("--poll", "poll_s", type=float, default=0.2, show_default=True, help="Seconds between looks at INBOX.")
@click.option("--settle", "settle_s", type=float, default=0.5, show_default=True,
              help="A file must keep its size this many seconds before it is read.")
@click.option("--once", is_flag=True, help="Predict what is complete in INBOX now, then stop.")
@click.option("--idle-exit", "idle_exit_s", type=float, help="Stop after this many seconds without a new file.")
@click.option("--no-ood-check", is_flag=True, help="Skip the check of each frame against the training domain.")
def watch(model: str, inbox: str, out: str, backend: str, precision: str, max_deviation: float, device: str | None,
          tile_size: int | None, tta: bool, no_rescale: bool, poll_s: float, settle_s: float, once: bool,
          idle_exit_s: float | None, no_ood_check: bool) -> None:
    """Predict each image file as it appears in INBOX (a running acquisition); Ctrl-C stops."""
    from .inference.options import PredictOptions
    from .workflows.stain.watch import WatchSettings, watch_folder

    options = PredictOptions(tile_size=tile_size, tta=tta, rescale=not no_rescale, device=device, backend=backend,
                             precision=precision, max_deviation=max_deviation)
    watch_folder(model, inbox, out, options, WatchSettings(poll_s=poll_s, settle_s=settle_s, once=once,
                                                           idle_exit_s=idle_exit_s, check_domain=not no_ood_check),
                 log=click.echo)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The new plate, e.g. plate.zarr.")
def convert(files: tuple[str, ...], out: str) -> None:
    """Write image FILES into an OME-Zarr plate (one position per file; wells from names like B03)."""
    from ._atomic import refuse_overwriting_inputs
    from .data.ome_zarr import convert_tiffs

    if not out.rstrip("/").endswith(".zarr"):
        raise UserError(f"{out}: --out must end in .zarr (an OME-Zarr plate is written); e.g. --out plate.zarr")
    refuse_overwriting_inputs([Path(out)], [Path(f) for f in files])
    positions = convert_tiffs(list(files), out)
    click.echo(f"{len(positions)} position(s) in {out}: " + ", ".join(p.path for p in positions[:8])
               + (" …" if len(positions) > 8 else ""))


@cli.command()
@click.argument("model", type=click.Path())
@click.argument("label_free", type=click.Path(dir_okay=False))
@click.argument("fluorescence", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the aligned image and "
              "its transform.")
@click.option("--channel", type=int, help="Predicted channel to register on (default: named like the fluorescence).")
def register(model: str, label_free: str, fluorescence: str, out: str, channel: int | None) -> None:
    """Align FLUORESCENCE to LABEL_FREE by predicting the stain first (shift, rotation, scale)."""
    from .workflows.stain.register import register_by_prediction

    r = register_by_prediction(model, label_free, fluorescence, out, channel=channel)
    t, (ey, ex) = r.transform, r.residual
    click.echo(f"transform: shift ({t.dy:+.2f}, {t.dx:+.2f}) px, rotation {t.angle_deg:+.2f}°, scale {t.scale:.4f}")
    click.echo(f"r with the prediction: {r.r_before:.3f} before, {r.r_after:.3f} after; residual shift "
               f"({ey:+.2f}, {ex:+.2f}) px")
    click.echo(f"aligned: {r.aligned}; transform: {r.report}")


@cli.command("export")
@click.argument("model", type=click.Path())
@click.option("--format", "fmt", required=True, type=click.Choice(["onnx", "bmz"]),
              help="onnx: the network with dynamic size (normalisation in its metadata); bmz: a BioImage Model Zoo "
              "package (.zip) for bioimage.io, deepImageJ, ilastik.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .onnx file or the package .zip.")
@click.option("--weights-license", default="CC-BY-4.0", show_default=True,
              help="SPDX licence of the exported weights (bmz).")
@click.option("--test-image", type=click.Path(dir_okay=False),
              help="bmz: a real input image for the package's test tensors and cover (default: synthetic).")
def export(model: str, fmt: str, out: str, weights_license: str, test_image: str | None) -> None:
    """Export the bundle MODEL for other tools."""
    from ._atomic import check_output_suffix, ensure_writable_dir
    from .models.bundle import load_bundle

    suffix, what = {"onnx": (".onnx", "an ONNX graph"), "bmz": (".zip", "a BioImage Model Zoo package")}[fmt]
    check_output_suffix(out, [suffix], what)
    bundle = load_bundle(model)
    ensure_writable_dir(Path(out).resolve().parent)
    if fmt == "onnx":
        from .inference.onnx_graph import export_onnx

        path = export_onnx(bundle, out)
    else:
        from .export.bmz import export_bmz

        test_input = None
        if test_image:
            from .data.samples import load_input

            test_input, _ = load_input(test_image, bundle.config.spatial_dims, bundle.input_channels,
                                       bundle.input_channel_names)
        path = export_bmz(model, Path(out), license=weights_license, test_input=test_input)  # the bundle's own files
    click.echo(f"{fmt}: {path} ({Path(path).stat().st_size / 2 ** 20:.1f} MB)")


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print model.json as it is.")
def info(model: str, as_json: bool) -> None:
    """Describe a model bundle (checks its checksum)."""
    from .models.bundle_meta import read_meta  # JSON only: --json needs neither torch nor the weights

    meta = read_meta(model)
    if as_json:
        click.echo(json.dumps(meta, indent=2))
        return
    from .models.bundle import load_bundle
    from .models.unet import count_parameters

    bundle = load_bundle(model)
    cfg = bundle.config
    lines = [
        f"model: {model}",
        f"architecture: {bundle.architecture} ({cfg.describe()}), {count_parameters(bundle.network):,} parameters",
        f"inputs: {', '.join(bundle.input_channel_names)}"
        + (f" (channels {bundle.input_channels} of each file)" if bundle.input_channels else ""),
        f"outputs: {', '.join(bundle.output_channel_names)}",
        f"normalization: input {bundle.input_normalizer.method}, target {bundle.target_normalizer.method}",
        f"pixel size: {bundle.pixel_size_um if bundle.pixel_size_um else 'unknown'} µm"
        + (f" in, {cfg.scale}× super-resolved out" if cfg.scale > 1 else ""),
        f"acquisition: {json.dumps(bundle.acquisition.to_dict()) if bundle.acquisition.to_dict() else 'not recorded'}",
        f"receptive field: {meta['receptive_field_px']} px, tiling margin {meta['tiling_margin_px']} px, "
        f"size multiple {meta['size_multiple']}",
        f"trained: {bundle.created}, virtualstain {bundle.package_version}, "
        f"{bundle.training.epochs} epochs, split {bundle.training.split_mode}",
        f"validation: {json.dumps(bundle.validation.to_dict())}",
        f"manifest sha256: {bundle.training.manifest_sha256}",
        f"weights sha256: {bundle.weights_sha256} (verified)",
    ]
    click.echo("\n".join(lines))


def _phase_summary(phase, out: str) -> None:
    click.echo(f"{out}\tphase {float(phase.min()):.3f} … {float(phase.max()):.3f} rad")


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} {text!r}: give numbers separated by commas, e.g. -1,1") from None


@cli.group()
def phase() -> None:
    """Retrieve quantitative phase (radians) from raw frames."""


@phase.command("hologram")
@click.argument("hologram", type=click.Path(dir_okay=False))
@click.option("--background", type=click.Path(dir_okay=False), help="Hologram of the empty field (recommended).")
@click.option("--wavelength-um", type=float, required=True, help="Laser wavelength, µm.")
@click.option("--pixel-size-um", type=float, help="Pixel size in the sample, µm (default: from the file).")
@click.option("--filter-size", default=1 / 3, show_default=True, type=float,
              help="Sideband filter radius as a fraction of the sideband distance.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Phase TIFF to write.")
def phase_hologram(hologram: str, background: str | None, wavelength_um: float, pixel_size_um: float | None,
                   filter_size: float, out: str) -> None:
    """Off-axis hologram → unwrapped, background-corrected phase (qpretrieve)."""
    from .workflows.phase.retrieve import phase_from_hologram

    _phase_summary(phase_from_hologram(hologram, out, background=background, wavelength_um=wavelength_um,
                                       pixel_size_um=pixel_size_um, filter_size=filter_size), out)


@phase.command("qlsi")
@click.argument("interferogram", type=click.Path(dir_okay=False))
@click.option("--reference", required=True, type=click.Path(dir_okay=False), help="Interferogram without sample.")
@click.option("--wavelength-um", type=float, required=True, help="Wavelength, µm.")
@click.option("--pitch-term-um", type=float, required=True, help="QLSI camera's grating term L·a/d, µm.")
@click.option("--pixel-size-um", type=float, help="Pixel size in the sample, µm (default: from the file).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Phase TIFF to write.")
def phase_qlsi(interferogram: str, reference: str, wavelength_um: float, pitch_term_um: float,
               pixel_size_um: float | None, out: str) -> None:
    """Quadri-wave lateral shearing interferogram → phase (qpretrieve)."""
    from .workflows.phase.retrieve import phase_from_qlsi

    _phase_summary(phase_from_qlsi(interferogram, out, reference=reference, wavelength_um=wavelength_um,
                                   pixel_size_um=pixel_size_um, pitch_term_um=pitch_term_um), out)


@phase.command("shifting")
@click.argument("frames", type=click.Path(dir_okay=False))
@click.option("--wavelength-um", type=float, help="Wavelength, µm (stored in the output's metadata).")
@click.option("--pixel-size-um", type=float, help="Pixel size, µm (default: from the file).")
@click.option("--no-unwrap", is_flag=True, help="Keep the phase wrapped to (−π, π].")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Phase TIFF to write.")
def phase_shifting(frames: str, wavelength_um: float | None, pixel_size_um: float | None, no_unwrap: bool,
                   out: str) -> None:
    """Four frames at reference shifts 0, π/2, π, 3π/2 (one (4, Y, X) stack) → phase."""
    from .workflows.phase.retrieve import phase_from_shifting

    _phase_summary(phase_from_shifting(frames, out, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um,
                                       unwrap=not no_unwrap), out)


@phase.command("tie")
@click.argument("stack", type=click.Path(dir_okay=False))
@click.option("--z-um", required=True, help="Defocus of each plane in file order, µm, e.g. -2,2 or -2,0,2.")
@click.option("--wavelength-um", type=float, required=True, help="Centre wavelength of the illumination, µm.")
@click.option("--pixel-size-um", type=float, help="Pixel size in the sample, µm (default: from the file).")
@click.option("--solver", default="dct", show_default=True, type=click.Choice(["fft", "dct", "iterative"]),
              help="fft: periodic; dct: Neumann boundaries; iterative: DCT + re-simulation of the planes.")
@click.option("--regularization", default=1e-4, show_default=True, type=float, help="Tikhonov ε, µm⁻².")
@click.option("--medium-index", default=1.0, show_default=True, type=float, help="Refractive index of the medium.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Phase TIFF to write.")
def phase_tie(stack: str, z_um: str, wavelength_um: float, pixel_size_um: float | None,
              solver: Literal["fft", "dct", "iterative"],
              regularization: float, medium_index: float, out: str) -> None:
    """Two or three defocused bright-field planes → phase by the transport-of-intensity equation."""
    from .workflows.phase.retrieve import phase_from_tie

    _phase_summary(phase_from_tie(stack, out, z_um=_floats(z_um, "--z-um"), wavelength_um=wavelength_um,
                                  pixel_size_um=pixel_size_um, solver=solver, regularization_per_um2=regularization,
                                  medium_index=medium_index), out)


@cli.command()
@click.argument("stack", type=click.Path(dir_okay=False))
@click.option("--n", "n_planes", default=1, show_default=True, type=int, help="How many planes to pick.")
@click.option("--measure", default="haar", show_default=True, type=click.Choice(["haar", "normalized_variance"]),
              help="haar: detail energy of a Haar wavelet transform (PICS); normalized_variance: var/mean.")
@click.option("--mode", default="max", show_default=True, type=click.Choice(["max", "min"]),
              help="max for fluorescence, phase and fine bright-field detail; min for the overall contrast of "
                   "bright-field images of thin phase objects (lowest at focus).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the picked planes (best first) as a TIFF stack.")
def focus(stack: str, n_planes: int, measure: Literal["haar", "normalized_variance"], mode: Literal["max", "min"],
          out: str | None) -> None:
    """Rank the planes of a (Z, Y, X) stack by a focus measure and pick the N most in focus."""
    from .workflows.phase.retrieve import focus_planes

    curve, picked = focus_planes(stack, n_planes, measure=measure, mode=mode, out=out)
    for i, value in enumerate(curve):
        click.echo(f"plane {i}\t{measure} {value:.6g}" + ("\t<- picked" if i in picked else ""))
    click.echo(f"most in focus: {', '.join(str(int(i)) for i in picked)}" + (f"; wrote {out}" if out else ""))


@cli.command()
@click.argument("phases", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for lr/, hr/ and manifest.csv.")
@click.option("--synthetic", default=0, show_default=True, type=int, help="Also simulate N synthetic cell fields.")
@click.option("--defocus-um", default="4", show_default=True, help="z in µm: one value, Z1:Z2 (1 µm steps) or Z1:Z2:STEP.")
@click.option("--coherence", default="0", show_default=True, help="S = NA_cond/NA_obj: one value, S1:S2 (0.1 steps) "
              "or S1:S2:STEP.")
@click.option("--binning", default=4, show_default=True, type=int, help="Camera binning k (super-resolution factor).")
@click.option("--noise", default=0.01, show_default=True, type=float, help="Gaussian noise σ (empty field = 1).")
@click.option("--wavelength-um", type=float, required=True, help="Illumination wavelength, µm.")
@click.option("--pixel-size-um", type=float, required=True, help="Pixel size of the high-resolution phase maps, µm.")
@click.option("--na", type=float, required=True, help="Objective numerical aperture.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the noise and synthetic cells.")
@click.option("--synthetic-peak-rad", help="LOW:HIGH: scale each synthetic field so that its largest phase is drawn "
              "from this range (rad); default as generated (≈2.6 rad).")
def simulate(phases: tuple[str, ...], out: str, synthetic: int, defocus_um: str, coherence: str, binning: int,
             noise: float, wavelength_um: float, pixel_size_um: float, na: float, seed: int,
             synthetic_peak_rad: str | None) -> None:
    """Low-resolution bright-field / high-resolution phase training pairs from phase maps (DL-SRQPI)."""
    from .workflows.srqpi.simulate import SimulationSettings, parse_values, simulate_pairs

    settings = SimulationSettings(
        wavelength_um=wavelength_um, pixel_size_um=pixel_size_um, na=na, binning=binning, noise=noise, seed=seed,
        defocus_um=parse_values(defocus_um, "--defocus-um", 1.0), coherence=parse_values(coherence, "--coherence", 0.1),
        synthetic_peak_rad=_floats(synthetic_peak_rad.replace(":", ","), "--synthetic-peak-rad")
        if synthetic_peak_rad else None)
    result = simulate_pairs(phases, out, settings, synthetic=synthetic, progress=True)
    click.echo(f"{len(result.pairs)} pairs → {result.manifest}")


@cli.command("defocus-pairs")
@click.argument("images", nargs=-1, required=True, metavar="IMAGES...", type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for input/, target/, manifest.csv and defocus_pairs.json.")
@click.option("--z-um", required=True, help="Defocus z in µm: one value, Z1:Z2 (1 µm steps) or Z1:Z2:STEP; with --psf "
              "the z of each PSF plane, in file order.")
@click.option("--exclude-um", help="LOW:HIGH: drop the z values in this closed interval (near-focus planes), e.g. -2:2.")
@click.option("--na", type=float, help="Objective numerical aperture (below --medium-index).")
@click.option("--wavelength-um", type=float, help="Emission wavelength, µm (e.g. 0.46 for Hoechst).")
@click.option("--pixel-size-um", type=float, help="Pixel size in the sample, µm (default: from each file).")
@click.option("--medium-index", default=1.0, show_default=True, type=float,
              help="Refractive index of the immersion medium (air 1.0, water 1.33, oil 1.515).")
@click.option("--noise", default=0.0, show_default=True, type=float,
              help="Gaussian noise σ as a fraction of each source image's range max − min (images are written as "
                   "(I − min)/(max − min), 0…1); 0 = no noise.")
@click.option("--photons", type=float, help="Also shot noise: Poisson with this many photons at the normalised "
              "intensity 1 (applied before --noise).")
@click.option("--psf", type=click.Path(dir_okay=False), help="Measured PSF TIFF instead of the computed one: (Y, X), "
              "or (Z, Y, X) with one plane per --z-um value; the images' pixel size, centred on pixel [ny//2, nx//2].")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the noise.")
@click.option("--channel-name", help="Channel name in the written files (default: the file's, else fluorescence); "
              "e.g. hoechst, so that evaluate judges nuclei.")
def defocus_pairs(images: tuple[str, ...], out: str, z_um: str, exclude_um: str | None, na: float | None,
                  wavelength_um: float | None, pixel_size_um: float | None, medium_index: float, noise: float,
                  photons: float | None, psf: str | None, seed: int, channel_name: str | None) -> None:
    """Defocused / in-focus training pairs from in-focus fluorescence IMAGES (autofocus, VirFluoNet).

    Each image, scaled to 0…1 by its min and max, is the target; the input is it blurred by the incoherent
    defocus PSF of a circular pupil (NA, λ, n) at each z, plus noise. The manifest groups all z of one image,
    so that a split never puts one field in training and test.
    """
    from .data.ranges import parse_interval, parse_values
    from .workflows.focus.defocus_pairs import DefocusSettings, make_defocus_pairs

    settings = DefocusSettings(
        z_um=parse_values(z_um, "--z-um", 1.0),
        exclude_um=list(parse_interval(exclude_um, "--exclude-um")) if exclude_um is not None else None,
        wavelength_um=wavelength_um, na=na, pixel_size_um=pixel_size_um, medium_index=medium_index, noise=noise,
        photons=photons, psf=psf, seed=seed, channel_name=channel_name)
    result = make_defocus_pairs(images, out, settings, log=click.echo)
    skipped = f" ({result.skipped} already there)" if result.skipped else ""
    click.echo(f"{len(result.pairs)} pairs{skipped} → {result.manifest}")


@cli.command("evaluate-sr")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--model", "models", multiple=True, required=True, metavar="NAME=FOLDER",
              help="A super-resolution model to judge, e.g. sr_unet=RUN/model (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for metrics.csv, report.md.")
@click.option("--no-baselines", is_flag=True, help="Skip the FFT-/DCT-/single-plane TIE baselines.")
@click.option("--tile-size", type=int, default=None, help="Tile core in input px (0 = whole image).")
def evaluate_sr(manifest: str, models: tuple[str, ...], out: str, no_baselines: bool, tile_size: int | None) -> None:
    """Judge super-resolved phase (DL-SRQPI) on simulated pairs against the truth and TIE baselines."""
    from .models.bundle import load_bundle
    from .workflows.srqpi.evaluate import evaluate_srqpi, write_srqpi_evaluation

    bundles = {}
    for item in models:
        name, sep, model_dir = item.partition("=")
        if not sep or not name or not model_dir:
            raise UserError(f"--model {item!r}: write NAME=FOLDER, e.g. sr_unet=RUN/model")
        bundles[name] = load_bundle(model_dir)
    evaluation = evaluate_srqpi(manifest, bundles, baselines=not no_baselines, tile_size=tile_size, progress=True)
    folder = write_srqpi_evaluation(evaluation, out)
    click.echo((folder / "report.md").read_text(encoding="utf-8"))


@cli.command()
@click.argument("phase", type=click.Path())
@click.option("--nucleus-model", required=True, type=click.Path(), help="Bundle predicting the nuclear stain.")
@click.option("--cell-model", type=click.Path(), help="Bundle predicting a cytoplasm or membrane stain (default: "
              "cells from the phase itself).")
@click.option("--nucleus-channel", help="Output channel of --nucleus-model to use (default: its first).")
@click.option("--cell-channel", help="Output channel of --cell-model to use (default: its first).")
@click.option("--cell-stain", type=click.Choice(["cytoplasm", "membrane"]), default="cytoplasm", show_default=True,
              help="What the cell model's stain marks.")
@click.option("--segmenter", type=click.Choice(["learned", "classical", "cellpose"]), default="learned",
              show_default=True, help="Nuclei segmenter applied to the virtual nuclear stain.")
@click.option("--wavelength-um", required=True, type=float, help="Illumination wavelength, µm.")
@click.option("--pixel-size-um", type=float, help="Pixel size, µm (default: from the file).")
@click.option("--interval-h", default=1.0, show_default=True, type=float, help="Time between frames, h.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
def pics(phase: str, nucleus_model: str, cell_model: str | None, nucleus_channel: str | None,
         cell_channel: str | None, cell_stain: str, segmenter: str, wavelength_um: float, pixel_size_um: float | None,
         interval_h: float, out: str) -> None:
    """PICS end to end: virtual stains from a PHASE time-lapse (rad; TIFF or PLATE.zarr/A/1/0), nuclei and cells,
    tracks, per-cell nucleus/cytoplasm dry mass over time and growth fits."""
    from .workflows.stain.pics import run_pics

    result = run_pics(phase, nucleus_model, out, cell_model=cell_model, nucleus_channel=nucleus_channel,
                      cell_channel=cell_channel, cell_stain=cell_stain, wavelength_um=wavelength_um,
                      pixel_size_um=pixel_size_um, interval_h=interval_h, segmenter=segmenter, log=click.echo)
    for row in (r for r in result.tables.growth if r["object"] == "field"):
        click.echo(f"field {row['compartment']}: doubling time {row['doubling_time_h']:.2f} h "
                   f"({row['doubling_time_ci_low_h']:.2f}–{row['doubling_time_ci_high_h']:.2f})")
    click.echo(f"{result.tables.tracks.n_tracks} track(s) over {result.frames} frame(s): {out}/cells.csv, "
               f"fields.csv, growth.csv, summary.html")


@cli.command()
@click.argument("phase_map", metavar="PHASE", type=click.Path(dir_okay=False))
@click.option("--labels", type=click.Path(dir_okay=False), help="Instance labels (or a 0/1 mask).")
@click.option("--nucleus-mask", type=click.Path(dir_okay=False), help="Nuclei (mask or labels), with --cell-mask.")
@click.option("--cell-mask", type=click.Path(dir_okay=False), help="Cells (mask or labels), with --nucleus-mask.")
@click.option("--wavelength-um", type=float, help="Wavelength, µm (default: from the phase file).")
@click.option("--pixel-size-um", type=float, help="Pixel size, µm (default: from the phase file).")
@click.option("--alpha", default=0.18, show_default=True, type=float, help="Refractive increment α, mL/g.")
@click.option("--interval-h", default=1.0, show_default=True, type=float, help="Time between frames of a time-lapse, h.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="CSV table to write.")
def drymass(phase_map: str, labels: str | None, nucleus_mask: str | None, cell_mask: str | None,
            wavelength_um: float | None, pixel_size_um: float | None, alpha: float, interval_h: float, out: str) -> None:
    """Dry mass (pg) per object or per nucleus/cytoplasm from a phase map (or a time-lapse of them)."""
    from .workflows.phase.drymass import measure_dry_mass

    result = measure_dry_mass(phase_map, out, labels=labels, nucleus_mask=nucleus_mask, cell_mask=cell_mask,
                              wavelength_um=wavelength_um, pixel_size_um=pixel_size_um, alpha_ml_per_g=alpha,
                              interval_h=interval_h)
    last = result.field_rows[-1]
    click.echo(f"{len(result.field_rows)} frame(s); last: {last['objects']} objects, "
               f"{last['dry_mass_pg']:.1f} pg, confluence {last['confluence']:.3f}")
    for fit in result.growth:
        if fit["object"] == "field":
            click.echo(f"field doubling time {fit['doubling_time_h']:.3g} h "
                       f"(95% CI {fit['doubling_time_ci_low_h']:.3g}–{fit['doubling_time_ci_high_h']:.3g} h)")
    for path in result.files:
        click.echo(f"wrote {path}")


@cli.command()
@click.option("--out", default="virtualstain-demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--data", type=click.Path(exists=True), help="Real data: a manifest, or ../shared/data (FRM set).")
@click.option("--epochs", default=24, show_default=True, type=click.IntRange(min=1),  # = demo.DEMO_EPOCHS
              help="Epochs of 128 patches: the same model on a busy or an idle machine.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True),
              help="Train to this wall-clock budget instead of --epochs.")
def demo(out: str, data: str | None, minutes: float | None, epochs: int) -> None:
    """Train on synthetic bright-field cells, predict, evaluate and write a short report (≤3 minutes on 2 CPU
    cores)."""
    from .workflows.stain.demo import run_demo

    result = run_demo(out, data=data, minutes=minutes, progress=sys.stderr.isatty(), epochs=epochs)
    channels = result.evaluation.channels
    for name, s in channels.items():
        click.echo(f"test r [{name}]: {s.pearson_r_mean:.3f}")
    for name, s in channels.items():
        for v in s.verdicts:
            click.echo(f"{name} {v.readout} [{v.status}]: {v.text}")
    if result.dry_mass:
        d = result.dry_mass
        click.echo(f"dry mass of {d.matched_nuclei} matched nuclei, virtual vs real: r = {d.nucleus_mass_r:.3f}, "
                   f"median error {100 * d.nucleus_mass_median_error:+.1f} %")
    click.echo(f"report: {result.report} and {out}/report.md ({result.total_seconds} s)")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings (e.g. a defocus outside the trained range) as one ``warning:`` line."""
    if issubclass(category, UserWarning) and "virtualstain" in str(filename):
        click.echo(f"warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def _bug() -> int:
    """Show the traceback of an unexpected exception as ours to fix; exit code 1."""
    traceback.print_exc()
    click.echo(f"virtualstain {__version__}: internal error (a bug) — please report it with the traceback above",
               err=True)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command, map errors to exit codes: 2 user error (a full disk included), 128 + N
    interrupted by signal N (130 Ctrl-C, 143 SIGTERM; rerun to resume), 1 bug."""
    try:
        with warnings.catch_warnings():  # restores the default display afterwards
            warnings.showwarning = _show_warning
            cli.main(args=argv, prog_name="virtualstain", standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except Interrupted as exc:
        click.echo(f"interrupted: {exc}", err=True)
        return 128 + exc.signum
    except KeyboardInterrupt:
        click.echo("interrupted; rerun the same command to resume", err=True)
        return 130
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            return _bug()
        click.echo(f"error: {exc.filename or 'output'}: the disk is full ({exc.strerror}); free space or choose "
                   "another --out, then rerun the same command (finished work is kept)", err=True)
        return 2
    except Exception:  # anything else is our bug: show it, exit 1
        return _bug()
    return 0


def _console() -> None:
    """Console-script wrapper."""
    sys.exit(main())


if __name__ == "__main__":
    _console()
