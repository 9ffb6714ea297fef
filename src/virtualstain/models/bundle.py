"""Model bundles: a folder with ``weights.safetensors``, ``model.json`` and ``weights.sha256``.

Loading reads JSON and safetensors only (never pickle), checks the SHA-256 of the
weights and the bundle format version, and builds the network through the registry.

``model.json`` holds: ``format_version``, ``architecture``, ``unet`` (the
:class:`~virtualstain.models.unet.UNetConfig`), ``input_channel_names``,
``output_channel_names``, ``input_channels`` (the planes/channels selected from input
files), ``normalization`` (``input`` and ``target`` statistics), ``pixel_size_um`` (of the
input), ``scale`` and ``output_pixel_size_um`` (super-resolution: output pixels per input
pixel), ``acquisition`` (binning, wavelength, NA, defocus/coherence ranges of the training
inputs, when their files recorded them), ``size_multiple``, ``receptive_field_px``,
``tiling_margin_px`` (input pixels), ``training`` (config,
manifest hash, split plan), ``validation`` metrics, ``package_version``, ``created``,
``weights_sha256``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from ..data.normalization import Normalizer
from ..errors import UserError
from .inference import prepare_for_inference
from .receptive_field import receptive_field, tiling_margin
from .registry import build
from .unet import UNet, UNetConfig

FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
META = "model.json"
CHECKSUM = "weights.sha256"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ModelBundle:
    """A trained network with everything needed to apply it.

    Attributes
    ----------
    network : UNet
        The network (eval mode after loading).
    architecture : str
        Registry name.
    input_normalizer, target_normalizer : Normalizer
        Fitted on the training split.
    input_channel_names, output_channel_names : list of str
    input_channels : list of int or None
        Channels/planes selected from each input file during training.
    pixel_size_um : float or None
        Lateral pixel size of the training inputs in µm.
    acquisition : dict
        How the training inputs were acquired (see :func:`~virtualstain.data.samples.acquisition`).
    info : dict
        Everything else recorded in ``model.json``.
    """

    network: UNet
    architecture: str
    input_normalizer: Normalizer
    target_normalizer: Normalizer
    input_channel_names: list[str]
    output_channel_names: list[str]
    input_channels: list[int] | None = None
    pixel_size_um: float | None = None
    acquisition: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    _inference: dict = field(default_factory=dict, repr=False, compare=False)

    def inference_network(self, device: torch.device) -> torch.nn.Module:
        """The network prepared for fast inference on ``device`` (folded batch norm, channels-last), cached."""
        key = str(device)
        if key not in self._inference:
            self._inference[key] = prepare_for_inference(self.network, device)
        return self._inference[key]

    @property
    def config(self) -> UNetConfig:
        return self.network.config

    @property
    def margin(self) -> tuple[int, ...]:
        return tiling_margin(self.config)

    def to_json(self) -> dict:
        cfg = self.config
        return {
            **self.info,
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "unet": cfg.to_dict(),
            "input_channel_names": self.input_channel_names,
            "output_channel_names": self.output_channel_names,
            "input_channels": self.input_channels,
            "normalization": {"input": self.input_normalizer.to_dict(), "target": self.target_normalizer.to_dict()},
            "pixel_size_um": self.pixel_size_um,
            "scale": cfg.scale,
            "output_pixel_size_um": self.pixel_size_um / cfg.scale if self.pixel_size_um else None,
            "acquisition": self.acquisition,
            "size_multiple": list(cfg.size_multiple()),
            "receptive_field_px": list(receptive_field(cfg)),
            "tiling_margin_px": list(tiling_margin(cfg)),
            "package_version": __version__,
        }


def save_bundle(bundle: ModelBundle, folder: str | os.PathLike) -> Path:
    """Write ``bundle`` to ``folder`` atomically (a temporary folder renamed at the end)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.part-"))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in bundle.network.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt", "virtualstain": __version__})
        digest = _sha256(tmp / WEIGHTS)
        meta = bundle.to_json()
        meta["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        meta["weights_sha256"] = digest
        (tmp / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        (tmp / CHECKSUM).write_text(f"{digest}  {WEIGHTS}\n", encoding="utf-8")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_meta(folder: str | os.PathLike) -> dict:
    """Read and check ``model.json`` of a bundle (no weights loaded)."""
    folder = Path(folder)
    if folder.is_file() and folder.name == META:
        folder = folder.parent
    if not folder.exists():
        raise UserError(f"{folder}: model not found; give the bundle folder written by `virtualstain train` (RUN/model)")
    meta_path = folder / META
    if not meta_path.exists():
        raise UserError(f"{folder}: not a model bundle (no {META}); give the folder RUN/model written by training")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{meta_path}: unreadable JSON ({exc}); the bundle is damaged — retrain or restore it") from None
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(f"{meta_path}: bundle format {version!r} was written by virtualstain "
                        f"{meta.get('package_version', '?')}; this is {__version__} (format {FORMAT_VERSION}) — "
                        "upgrade virtualstain to load it")
    return meta


def load_bundle(folder: str | os.PathLike, device: str | torch.device = "cpu") -> ModelBundle:
    """Load a bundle: check the weights' SHA-256 and format version; never unpickle.

    Raises
    ------
    UserError
        Missing or damaged bundle, checksum mismatch, newer format.
    """
    folder = Path(folder)
    meta = read_meta(folder)
    if folder.is_file():
        folder = folder.parent
    weights = folder / WEIGHTS
    if not weights.exists():
        raise UserError(f"{folder}: {WEIGHTS} is missing; the bundle is incomplete — copy the whole folder")
    digest = _sha256(weights)
    expected = meta.get("weights_sha256")
    checksum_file = folder / CHECKSUM
    if checksum_file.exists():
        expected_file = checksum_file.read_text().split()[0]
        if expected and expected_file != expected:
            raise UserError(f"{checksum_file}: disagrees with {META}; the bundle was altered — restore it")
    if digest != expected:
        raise UserError(f"{weights}: SHA-256 {digest[:12]}… does not match {META} ({str(expected)[:12]}…); "
                        "the weights are damaged or were replaced — copy the bundle again")
    config = UNetConfig(**meta["unet"])
    network = build(meta["architecture"], config)
    state = load_file(str(weights), device="cpu")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{weights}: weights do not fit the architecture in {META} ({str(exc)[:200]}); "
                        "the bundle is inconsistent — retrain") from None
    network.eval().to(device)
    known = {"format_version", "architecture", "unet", "input_channel_names", "output_channel_names",
             "input_channels", "normalization", "pixel_size_um", "acquisition"}
    return ModelBundle(
        network=network,
        architecture=meta["architecture"],
        input_normalizer=Normalizer.from_dict(meta["normalization"]["input"]),
        target_normalizer=Normalizer.from_dict(meta["normalization"]["target"]),
        input_channel_names=list(meta["input_channel_names"]),
        output_channel_names=list(meta["output_channel_names"]),
        input_channels=meta.get("input_channels"),
        pixel_size_um=meta.get("pixel_size_um"),
        acquisition=dict(meta.get("acquisition") or {}),
        info={k: v for k, v in meta.items() if k not in known},
    )
