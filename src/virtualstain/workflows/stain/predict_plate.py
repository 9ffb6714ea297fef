"""``virtualstain predict MODEL PLATE.zarr --out OUT.zarr``: predict every position and time point of a plate.

The output is a plate of the same layout holding the predicted channels (the model's output names), with
the pixel size of the input and, per position, the provenance (model weights hash, source plate and
position, options). Positions are written whole and atomically
(:func:`~virtualstain.data.ome_zarr.write_position_data`) and listed in their well only when complete, so a
killed run is resumed by running the same command: finished positions made by the same model with the same
options are skipped.

Scale-out runs on dask ``distributed``: one task per position, on a local cluster of ``workers`` processes
or on an existing cluster (``scheduler``: e.g. one started by dask-jobqueue on SLURM/PBS; the plate and the
model must be on a file system the workers share). Workers write positions; this process lists them in their
wells as tasks finish, so no two processes edit a well's metadata. On one machine the default is this
process with torch on every core: measured on 2 cores (``benchmarks/bench_plate.py``) it beat a local
cluster of 2 single-thread workers, which pays for starting processes and loading torch and the model in
each, and gains only 1.1× at equal cores in steady state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...data.ome_zarr import (
    Position,
    PositionImage,
    create_plate,
    is_ome_zarr,
    plate_positions,
    plate_wells,
    read_position,
    register_position,
    split_position,
    write_position_data,
)
from ...errors import UserError
from ...inference.domain_check import check_domain, warn_if_unfamiliar
from ...inference.options import PredictOptions
from ...inference.predict import predict
from ...models.bundle import ModelBundle, load_bundle

_WORKER_MODELS: dict[str, ModelBundle] = {}


def _input_channels(bundle: ModelBundle, names: list[str], where: str) -> list[int]:
    """Indices of the model's input channels among a position's channel names (by name, else as trained)."""
    if all(n in names for n in bundle.input_channel_names):
        return [names.index(n) for n in bundle.input_channel_names]
    chosen = bundle.input_channels or list(range(bundle.config.in_channels))
    if max(chosen) >= len(names):
        raise UserError(f"{where}: channels {names} include neither the model's inputs {bundle.input_channel_names} "
                        f"nor channel(s) {chosen}; convert the plate with the model's input channel")
    return list(chosen)


def predict_position(bundle: ModelBundle, plate: Path, out: Path, position: Position, opts: PredictOptions,
                     recipe: dict) -> int:
    """Predict every time point of one position and write it (unlisted) into ``out``; returns the frame count.

    Every frame is checked against the training domain (:mod:`~virtualstain.inference.domain_check`): a warning
    when it is mostly unlike the training inputs, and the share of its tiles outside in the position's
    ``ood_outside`` attribute (one value per time point).
    """
    image = read_position(plate, position)
    where = f"{plate}/{position.path}"
    if bundle.config.spatial_dims == 2 and image.array.shape[2] != 1:
        raise UserError(f"{where}: {image.array.shape[2]} z-planes but the model is 2D; give a plate of single planes")
    channels = _input_channels(bundle, image.channel_names, where)
    frames, outside = [], []
    for t in range(image.array.shape[0]):
        x = image.array[t][channels].astype(np.float32)
        x = x[:, 0] if bundle.config.spatial_dims == 2 else x
        pred = predict(bundle, x, opts, source=f"{where} t={t}", pixel_size_um=image.pixel_size_um)
        frames.append(pred[:, None] if bundle.config.spatial_dims == 2 else pred)
        scores = check_domain(bundle, x, source=f"{where} t={t}", pixel_size_um=image.pixel_size_um,
                              rescale=opts.rescale)
        warn_if_unfamiliar(bundle, scores, f"{where} t={t}")
        outside.append(round(scores.fraction_outside, 4) if scores is not None else None)
    out_px = image.pixel_size_um / bundle.config.scale if image.pixel_size_um else None
    attributes = {"recipe": recipe, "position": position.path, "ood_outside": outside}
    write_position_data(out, position, PositionImage(np.stack(frames), list(bundle.output_channel_names), out_px,
                                                     image.z_step_um, attributes))
    return len(frames)


def _on_worker(model: str, plate: str, out: str, position: Position, opts: PredictOptions, recipe: dict,
               threads: int) -> tuple[Position, int, float]:
    """A dask task: the model is loaded once per worker process; returns (position, frames, seconds)."""
    import torch

    torch.set_num_threads(threads)
    if model not in _WORKER_MODELS:
        _WORKER_MODELS[model] = load_bundle(model)
    t0 = time.perf_counter()
    frames = predict_position(_WORKER_MODELS[model], Path(plate), Path(out), position, opts, recipe)
    return position, frames, time.perf_counter() - t0


def predict_plate(model: ModelBundle | str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike,
                  options: PredictOptions | None = None, *, workers: int | None = None, scheduler: str | None = None,
                  threads_per_worker: int | None = None, log: Callable[[str], None] = print) -> list[str]:
    """Predict a plate (or one position ``PLATE.zarr/A/1/0``) into the plate ``out``; returns the positions written.

    Parameters
    ----------
    model : ModelBundle or path
        The model; a path is needed when the work runs on dask workers.
    workers : int, optional
        0 or None: in this process (torch on every core); N ≥ 1: a local dask cluster of N worker processes,
        each with cores/N torch threads.
    scheduler : str, optional
        Address of an existing dask scheduler (``tcp://host:8786``); overrides ``workers``.
    threads_per_worker : int, optional
        Torch threads of each dask worker (default: the cores divided among the workers).

    Raises
    ------
    UserError
        ``source`` is no OME-Zarr plate or position, ``out`` is ``source``, a position's channels do not
        contain the model's inputs, or dask ``distributed`` is missing.
    """
    opts = options or PredictOptions()
    plate, only = split_position(source)
    if not is_ome_zarr(plate):
        raise UserError(f"{source}: not an OME-Zarr plate or position; give PLATE.zarr or PLATE.zarr/A/1/0 (convert "
                        "TIFF files with `virtualstain convert`)")
    out = Path(out)
    if out.resolve() == Path(plate).resolve():
        raise UserError(f"{out}: --out is the input plate; write predictions to a new plate, e.g. --out pred.zarr")
    if workers is not None and workers < 0:
        raise UserError(f"--workers {workers} must be ≥ 0 (0: in this process, the default; N: a local dask cluster "
                        "of N workers)")
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    positions = [only] if only else plate_positions(plate)
    recipe = {"model_sha256": bundle.weights_sha256, "source": str(Path(plate).name), "tta": opts.tta,
              "border": opts.border, "stitch": opts.stitch}
    done = set()
    if is_ome_zarr(out):
        done = {p for p in plate_positions(out) if read_position(out, p).attributes.get("recipe") == recipe}
        missing_wells = {p.well for p in positions} - set(plate_wells(out))
        if missing_wells:
            raise UserError(f"{out}: an existing plate without the well(s) {sorted(missing_wells)}; give a new --out")
    else:
        create_plate(out, positions)
    todo = [p for p in positions if p not in done]
    if done:
        log(f"{len(done)} position(s) already predicted by this model with these options, skipped")
    cores = os.cpu_count() or 1
    n = workers or 0
    if scheduler is None and n == 0:
        written = []
        for position in todo:
            t0 = time.perf_counter()
            frames = predict_position(bundle, Path(plate), out, position, opts, recipe)
            register_position(out, position)
            written.append(position.path)
            log(f"{position.path}: {frames} frame(s) in {time.perf_counter() - t0:.1f} s ({len(written)}/{len(todo)})")
        return written
    if isinstance(model, ModelBundle):
        raise UserError("predicting on dask workers needs the model's folder, not a loaded model; pass its path")
    threads = threads_per_worker or max(1, cores // max(n, 1))
    return _on_dask(str(model), Path(plate), out, todo, opts, recipe, n, scheduler, threads, log)


def _on_dask(model: str, plate: Path, out: Path, todo: list[Position], opts: PredictOptions, recipe: dict, n: int,
             scheduler: str | None, threads: int, log: Callable[[str], None]) -> list[str]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise UserError('predicting a plate on several workers needs dask distributed: pip install '
                        '"virtualstain[dask]" (or --workers 0 to predict in this process)') from None
    if scheduler:
        client, cluster = Client(scheduler), None
        where = f"the dask cluster at {scheduler} ({len(client.scheduler_info()['workers'])} workers)"
    else:
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=40)
        client = Client(cluster)
        where = f"a local dask cluster of {n} worker(s), {threads} torch thread(s) each"
    log(f"{len(todo)} position(s) on {where}")
    written = []
    try:
        futures = [client.submit(_on_worker, model, str(plate), str(out), p, opts, recipe, threads, pure=False,
                                 key=f"predict-{p.path}-{time.time_ns()}") for p in todo]
        for future in as_completed(futures):
            position, frames, seconds = future.result()
            register_position(out, position)  # only this process edits the wells' metadata
            written.append(position.path)
            log(f"{position.path}: {frames} frame(s) in {seconds:.1f} s ({len(written)}/{len(todo)})")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return written
