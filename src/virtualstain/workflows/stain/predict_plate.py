"""``virtualstain predict MODEL PLATE.zarr --out OUT.zarr``: predict every position and time point of a plate.

The output is a plate of the same layout holding the predicted channels (the model's output names), with
the pixel size of the input and, per position, the provenance (model weights hash, source plate and
position, options). Positions are written whole and atomically (:func:`~virtualstain.data.ome_zarr.write_position`),
so a killed run is resumed by running the same command: finished positions made by the same model with the
same options are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...data.ome_zarr import (
    PositionImage,
    create_plate,
    is_ome_zarr,
    plate_positions,
    read_position,
    split_position,
    write_position,
)
from ...errors import UserError
from ...inference.options import PredictOptions
from ...inference.predict import predict
from ...models.bundle import ModelBundle, load_bundle


def _input_channels(bundle: ModelBundle, names: list[str], where: str) -> list[int]:
    """Indices of the model's input channels among a position's channel names (by name, else as trained)."""
    if all(n in names for n in bundle.input_channel_names):
        return [names.index(n) for n in bundle.input_channel_names]
    chosen = bundle.input_channels or list(range(bundle.config.in_channels))
    if max(chosen) >= len(names):
        raise UserError(f"{where}: channels {names} include neither the model's inputs {bundle.input_channel_names} "
                        f"nor channel(s) {chosen}; convert the plate with the model's input channel")
    return list(chosen)


def predict_plate(model: ModelBundle | str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike,
                  options: PredictOptions | None = None, *, log: Callable[[str], None] = print) -> list[str]:
    """Predict a plate (or one position ``PLATE.zarr/A/1/0``) into the plate ``out``; returns the positions written.

    Raises
    ------
    UserError
        ``source`` is no OME-Zarr plate or position, ``out`` is ``source``, or a position's channels do not
        contain the model's inputs.
    """
    opts = options or PredictOptions()
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    plate, only = split_position(source)
    if not is_ome_zarr(plate):
        raise UserError(f"{source}: not an OME-Zarr plate or position; give PLATE.zarr or PLATE.zarr/A/1/0 (convert "
                        "TIFF files with `virtualstain convert`)")
    if Path(out).resolve() == Path(plate).resolve():
        raise UserError(f"{out}: --out is the input plate; write predictions to a new plate, e.g. --out pred.zarr")
    positions = [only] if only else plate_positions(plate)
    recipe = {"model_sha256": bundle.weights_sha256, "source": str(Path(plate).name), "tta": opts.tta,
              "border": opts.border, "stitch": opts.stitch}
    done = set()
    if is_ome_zarr(out):
        for p in plate_positions(out):
            if read_position(out, p).attributes.get("recipe") == recipe:
                done.add(p)
    else:
        create_plate(out, positions)
    written = []
    for position in positions:
        if position in done:
            continue
        image = read_position(plate, position)
        where = f"{plate}/{position.path}"
        channels = _input_channels(bundle, image.channel_names, where)
        frames = []
        for t in range(image.array.shape[0]):
            x = image.array[t][channels].astype(np.float32)
            x = x[:, 0] if bundle.config.spatial_dims == 2 else x
            if bundle.config.spatial_dims == 2 and image.array.shape[2] != 1:
                raise UserError(f"{where}: {image.array.shape[2]} z-planes but the model is 2D; give a plate of "
                                "single planes")
            pred = predict(bundle, x, opts, source=f"{where} t={t}", pixel_size_um=image.pixel_size_um)
            frames.append(pred[:, None] if bundle.config.spatial_dims == 2 else pred)
        k = bundle.config.scale
        out_px = image.pixel_size_um / k if image.pixel_size_um else None
        write_position(out, position, PositionImage(np.stack(frames), list(bundle.output_channel_names), out_px,
                                                    image.z_step_um, {"recipe": recipe, "position": position.path}))
        written.append(position.path)
        log(f"{position.path}: {image.array.shape[0]} frame(s) predicted")
    if done:
        log(f"{len(done)} position(s) already predicted by this model with these options, skipped")
    return written
