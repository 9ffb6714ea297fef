"""A network as an ONNX graph with dynamic batch and spatial size, exported once per model and cached.

The graph is the inference copy of the network (batch norm folded, eval mode, fp32): it maps a
normalised ``(N, C, [Z,] Y, X)`` array to the normalised prediction, for any spatial size that is a
multiple of the network's size multiple. Normalisation and de-normalisation stay outside (they are
recorded in the metadata written by :func:`export_onnx` and applied by
:func:`~virtualstain.inference.predict.predict` on every backend).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from .._atomic import atomic_path
from .._cache import cache_dir
from .._version import __version__
from ..errors import UserError
from ..models.bundle import ModelBundle
from ..models.inference import network_config, prepare_for_inference

#: ONNX operator set of exported graphs (Resize, DepthToSpace and Conv are stable since 13; 17 is read by
#: onnxruntime ≥ 1.11, OpenVINO ≥ 2022.1, deepImageJ's ONNX engine and the BioImage Model Zoo).
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"


def require_onnx() -> None:
    """Raise a :class:`UserError` with the install command when the ``onnx`` package is missing."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError('exporting to ONNX needs the onnx package: pip install "virtualstain[onnx]"') from None


def export_onnx(bundle: ModelBundle, path: str | os.PathLike, *, metadata: bool = True) -> Path:
    """Write ``bundle``'s network as an ONNX graph (dynamic batch and spatial axes), atomically.

    Parameters
    ----------
    bundle : ModelBundle
        The model.
    path : path
        The ``.onnx`` file to write.
    metadata : bool
        Store ``model.json`` (channel names, normalisation, pixel size, receptive field) in the graph's
        metadata under the key ``virtualstain``, with the package version.

    Returns
    -------
    Path
        ``path``.
    """
    require_onnx()
    import onnx

    network = prepare_for_inference(bundle.network, torch.device("cpu")).float()
    config = network_config(network)
    example = torch.zeros((1, config.in_channels, *(2 * m for m in config.size_multiple())))
    spatial = {2 + i: name for i, name in enumerate("zyx"[-config.spatial_dims:])}
    axes = {0: "batch", **spatial}
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation on every call
        torch.onnx.export(network, (example,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}, opset_version=OPSET, dynamo=False)
        if metadata:
            graph = onnx.load(str(tmp))
            entry = graph.metadata_props.add()
            entry.key, entry.value = "virtualstain", json.dumps({"package_version": __version__,
                                                                 "model": bundle.to_json()})
            graph.producer_name, graph.producer_version = "virtualstain", __version__
            onnx.save(graph, str(tmp))
    return Path(path)


def model_key(bundle: ModelBundle) -> str:
    """The weights' SHA-256 (of the saved bundle; for an unsaved one, of its parameters and buffers)."""
    if bundle.weights_sha256:
        return bundle.weights_sha256
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(bundle.network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_onnx(bundle: ModelBundle) -> Path:
    """The ONNX graph of ``bundle`` in :func:`cache_dir` (``onnx/<weights sha256>-<version>.onnx``), exported
    the first time it is needed."""
    path = cache_dir() / "onnx" / f"{model_key(bundle)}-{__version__}-opset{OPSET}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(bundle, path, metadata=False)
    return path
