"""Start training from a trained bundle (``train --init MODEL``): fine-tuning, as VirFluoNet reuses its networks.

The bundle must hold the same architecture with the same configuration (depth, widths, channels in and out,
super-resolution factor) as the network the config and the data make; its weights (the moving average when one
was kept) become the starting point. Normalisation is fitted anew on the new training data (as for any run), so
the network sees the new data in the same normalised units it was trained on.
"""

from __future__ import annotations

import os

import torch

from ..errors import UserError
from ..models.bundle import load_bundle
from ..models.inference import network_config


def load_initial_weights(network: torch.nn.Module, architecture: str, model: str | os.PathLike) -> str:
    """Copy the weights of the bundle ``model`` into ``network`` (built as ``architecture``); return a line for the log.

    Raises
    ------
    UserError
        ``model`` is not a loadable bundle, or it holds another architecture or configuration (the message names
        both and the fix).
    """
    bundle = load_bundle(model)
    want, have = network_config(network), bundle.config
    if bundle.architecture != architecture or want != have:
        raise UserError(f"--init {model}: the bundle is a {bundle.architecture!r} model ({have.describe()}, "
                        f"{have.in_channels} → {have.out_channels} channels, scale {have.scale}), but this config and "
                        f"data make a {architecture!r} model ({want.describe()}, {want.in_channels} → "
                        f"{want.out_channels} channels, scale {want.scale}); set the model section and the channels "
                        "as the bundle was trained (virtualstain info MODEL), or train without --init")
    network.load_state_dict(bundle.network.state_dict())
    return f"init: weights from {model} ({have.describe()})"
