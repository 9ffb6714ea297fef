"""Model bundles: a folder with ``weights.safetensors``, ``model.json`` and ``weights.sha256``.

Loading reads JSON and safetensors only (never pickle), checks the SHA-256 of the
weights and the bundle format version, and builds the network through the registry.

``model.json`` (format 2) holds: ``format_version``, ``architecture``, ``network`` (the
architecture's configuration with its ``family``, see :mod:`~virtualstain.models.configs`),
``input_channel_names``, ``output_channel_names``, ``input_channels`` (the planes/channels
selected from input files), ``normalization`` (``input`` and ``target`` statistics),
``pixel_size_um`` (of the input), ``scale`` and ``output_pixel_size_um`` (super-resolution:
output pixels per input pixel), ``acquisition`` (binning, wavelength, NA, defocus/coherence
ranges of the training inputs, when their files recorded them), ``size_multiple``,
``receptive_field_px``, ``tiling_margin_px`` (input pixels), ``training`` (config, manifest
hash, split plan, input means, epochs), ``validation`` metrics, ``package_version``,
``input_domain`` (what the training inputs looked like, for the input check; null before it existed),
``uncertainty`` (the calibration of the predicted σ and how it held on the test regions; null when uncalibrated),
``ensemble_members`` (file and SHA-256 of each further ensemble member's weights, ``weights_member<k>.safetensors``),
``created``, ``weights_sha256`` and ``model_json_sha256`` (of the rest of ``model.json``, see
:mod:`~virtualstain.models.bundle_meta`; older bundles without it still load).

Loading refuses damaged bundles with a :class:`~virtualstain.errors.UserError` naming the file:
an edited ``model.json``, missing or ill-typed keys in it, normalisation statistics that are not
finite positive numbers, weights that are NaN or infinite, an empty ``weights.sha256``. Bundles are
written readable by others (folder 0755, files 0644, minus the umask), not private as ``mkdtemp`` makes them.

Format 1 (virtualstain 0.1.0) stored the network as ``unet``, a U-Net configuration whose
``family`` could say ``srcnn``; :func:`load_bundle` reads it too.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .._version import __version__
from ..analysis.input_domain import InputDomain
from ..data.acquisition import Acquisition
from ..data.normalization import Normalizer
from ..errors import UserError
from ..metrics.uncertainty import UncertaintyCalibration
from .bundle_meta import (
    CHECKSUM,
    FORMAT_VERSION,
    META,
    META_HASH_KEY,
    WEIGHTS,
    bundle_folder,
    file_sha256,
    read_meta,
    seal,
)
from .configs import NetworkConfig, SRCNNConfig, UNetConfig, config_from_dict
from .inference import network_config, prepare_for_inference
from .receptive_field import receptive_field, tiling_margin
from .registry import build

__all__ = ["CHECKSUM", "FORMAT_VERSION", "META", "META_HASH_KEY", "WEIGHTS", "ModelBundle", "TrainingRecord",
           "ValidationRecord", "load_bundle", "read_meta", "save_bundle"]

_UMASK = os.umask(0)
os.umask(_UMASK)




@dataclass
class TrainingRecord:
    """How a model was trained, as recorded in ``model.json`` (``training``).

    Attributes
    ----------
    config : dict
        The resolved training configuration (``TrainConfig`` as JSON).
    patch_size : list of int
        Training patch shape, input pixels.
    manifest, manifest_sha256 : str or None
        The manifest's path and the hash of the manifest text plus every array.
    split_mode, split : str
        How the data was split, and in words.
    n_samples : int
        Fields of view in the data.
    input_mean : list of float
        Mean grey level of each input channel over the training regions (for ``--match-brightness``).
    best_val_loss : float or None
        Best validation loss.
    epochs : int
        Epochs completed.
    seconds_this_session, patches_per_second : float
        Wall time and throughput of the last (possibly resumed) session.
    resumed_from : str or None
        The checkpoint the last session resumed from.
    stop_reason : str
        Why training ended: ``max_epochs``, ``early_stopping`` or ``time_budget``.
    extra : dict
        Keys this version does not know (from other versions), kept so that re-saving loses nothing.
    """

    config: dict = field(default_factory=dict)
    patch_size: list[int] = field(default_factory=list)
    manifest: str | None = None
    manifest_sha256: str | None = None
    split_mode: str = ""
    split: str = ""
    n_samples: int = 0
    input_mean: list[float] = field(default_factory=list)
    best_val_loss: float | None = None
    epochs: int = 0
    seconds_this_session: float = 0.0
    patches_per_second: float = 0.0
    resumed_from: str | None = None
    stop_reason: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict | None) -> TrainingRecord:
        data = dict(data or {})
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: data.pop(k) for k in list(data) if k in known}, extra=data)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**out, **self.extra}


@dataclass
class ValidationRecord:
    """Validation of the saved weights: the best loss (``loss_name``) and Pearson r per output channel."""

    loss: float | None = None
    loss_name: str = ""
    pearson_r: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict | None) -> ValidationRecord:
        data = data or {}
        return cls(loss=data.get("loss"), loss_name=data.get("loss_name", ""), pearson_r=dict(data.get("pearson_r") or {}))

    def to_dict(self) -> dict:
        return {"loss": self.loss, "loss_name": self.loss_name, "pearson_r": self.pearson_r}


@dataclass
class ModelBundle:
    """A trained network with everything needed to apply it.

    Attributes
    ----------
    network : torch.nn.Module
        The network (eval mode after loading); ``network.config`` is its configuration.
    architecture : str
        Registry name.
    input_normalizer, target_normalizer : Normalizer
        Fitted on the training split.
    input_channel_names, output_channel_names : list of str
    input_channels : list of int or None
        Channels/planes selected from each input file during training.
    pixel_size_um : float or None
        Lateral pixel size of the training inputs in µm.
    acquisition : Acquisition
        How the training inputs were acquired (pooled over them).
    training : TrainingRecord
        How the model was trained.
    validation : ValidationRecord
        How the saved weights validated.
    input_domain : InputDomain or None
        What the training inputs looked like, for the input check (:mod:`virtualstain.inference.domain_check`);
        None for models trained before it existed.
    uncertainty : UncertaintyCalibration or None
        How ``predict --uncertainty`` turns the test-time-augmentation spread into a calibrated σ, and how that σ
        held on the test regions; None when uncalibrated.
    members : list of torch.nn.Module
        The other networks of an ensemble (``train --ensemble K``: K − 1 of them, same architecture, other seeds),
        stored as ``weights_member<k>.safetensors``; ``network`` is the first member and predicts alone.
    weights_sha256, created, package_version : str
        Set when the bundle is saved or loaded.
    """

    network: torch.nn.Module
    architecture: str
    input_normalizer: Normalizer
    target_normalizer: Normalizer
    input_channel_names: list[str]
    output_channel_names: list[str]
    input_channels: list[int] | None = None
    pixel_size_um: float | None = None
    acquisition: Acquisition = field(default_factory=Acquisition)
    training: TrainingRecord = field(default_factory=TrainingRecord)
    validation: ValidationRecord = field(default_factory=ValidationRecord)
    input_domain: InputDomain | None = None
    uncertainty: UncertaintyCalibration | None = None
    members: list[torch.nn.Module] = field(default_factory=list, repr=False)
    weights_sha256: str = ""
    created: str = ""
    package_version: str = __version__
    _inference: dict = field(default_factory=dict, repr=False, compare=False)
    #: Runners built for this model by :mod:`virtualstain.inference` (engines per backend, the backend choice).
    runners: dict = field(default_factory=dict, repr=False, compare=False)

    def inference_network(self, device: torch.device) -> torch.nn.Module:
        """The network prepared for fast inference on ``device`` (folded batch norm, channels-last), cached."""
        key = str(device)
        if key not in self._inference:
            self._inference[key] = prepare_for_inference(self.network, device)
        return self._inference[key]

    @property
    def config(self) -> NetworkConfig:
        return network_config(self.network)

    @property
    def margin(self) -> tuple[int, ...]:
        return tiling_margin(self.config)

    def to_json(self) -> dict:
        cfg = self.config
        return {
            "training": self.training.to_dict(),
            "validation": self.validation.to_dict(),
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "network": cfg.to_dict(),
            "input_channel_names": self.input_channel_names,
            "output_channel_names": self.output_channel_names,
            "input_channels": self.input_channels,
            "normalization": {"input": self.input_normalizer.to_dict(), "target": self.target_normalizer.to_dict()},
            "pixel_size_um": self.pixel_size_um,
            "scale": cfg.scale,
            "output_pixel_size_um": self.pixel_size_um / cfg.scale if self.pixel_size_um else None,
            "acquisition": self.acquisition.to_dict(),
            "input_domain": self.input_domain.to_dict() if self.input_domain else None,
            "uncertainty": self.uncertainty.to_dict() if self.uncertainty else None,
            "size_multiple": list(cfg.size_multiple()),
            "receptive_field_px": list(receptive_field(cfg)),
            "tiling_margin_px": list(tiling_margin(cfg)),
            "package_version": __version__,
        }


def save_bundle(bundle: ModelBundle, folder: str | os.PathLike) -> Path:
    """Write ``bundle`` to ``folder`` atomically (a temporary folder renamed at the end).

    The folder gets mode 0755 and its files 0644 (minus the umask), so colleagues can read the model.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.part-"))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in bundle.network.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})  # one key: safetensors orders keys at random
        digest = file_sha256(tmp / WEIGHTS)
        member_files = []
        for k, member in enumerate(bundle.members, start=1):
            name = member_file(k)
            save_file({n: v.detach().cpu().contiguous() for n, v in member.state_dict().items()}, str(tmp / name),
                      metadata={"format": "pt"})
            member_files.append({"file": name, "sha256": file_sha256(tmp / name)})
        meta = bundle.to_json()
        meta["ensemble_members"] = member_files
        meta["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        meta["weights_sha256"] = digest
        meta = seal(meta)
        bundle.weights_sha256, bundle.created = digest, meta["created"]
        (tmp / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        (tmp / CHECKSUM).write_text(f"{digest}  {WEIGHTS}\n", encoding="utf-8")
        for name in (WEIGHTS, META, CHECKSUM, *(m["file"] for m in member_files)):
            os.chmod(tmp / name, 0o666 & ~_UMASK)
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700
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


def member_file(k: int) -> str:
    """File name of ensemble member ``k`` (1, 2, …) in a bundle."""
    return f"weights_member{k}.safetensors"


def _load_weights(network: torch.nn.Module, weights: Path, meta_path: Path) -> None:
    """Load a safetensors state dict into ``network``, refusing unreadable, non-finite or ill-fitting weights."""
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise UserError(f"{weights}: not readable safetensors ({type(exc).__name__}: {exc}); copy the bundle "
                        "again") from None
    bad = [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise UserError(f"{weights}: {len(bad)} tensor(s) hold NaN or infinite values (e.g. {bad[0]!r}); the model "
                        "diverged in training — retrain it, e.g. with a lower training.lr")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{weights}: weights do not fit the architecture in {meta_path.name} ({str(exc)[:200]}); "
                        "the bundle is inconsistent — retrain") from None


def _load_members(meta: dict, folder: Path, architecture: str, config: NetworkConfig) -> list[torch.nn.Module]:
    """The ensemble's other members, each checked against its SHA-256 in ``model.json``."""
    members = []
    for entry in meta.get("ensemble_members") or []:
        name, expected = str(entry["file"]), str(entry["sha256"])
        if name != Path(name).name or not name.endswith(".safetensors"):
            raise UserError(f"{folder / META}: ensemble member file {name!r} is not a weights file in the bundle; "
                            "the bundle is damaged — restore it")
        path = folder / name
        if not path.exists():
            raise UserError(f"{path}: ensemble member missing; the bundle is incomplete — copy the whole folder")
        if file_sha256(path) != expected:
            raise UserError(f"{path}: SHA-256 does not match {META}; the weights are damaged or were replaced — copy "
                            "the bundle again")
        network = build(architecture, config)
        _load_weights(network, path, folder / META)
        members.append(network.eval())
    return members


def _expected_from_checksum_file(path: Path) -> str:
    """The weights' SHA-256 in ``weights.sha256`` (``sha256sum`` format: ``<hex>  weights.safetensors``)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    words = text.split()
    if not words:
        raise UserError(f"{path}: is empty; the bundle is damaged — copy the whole bundle folder again (or retrain)")
    digest = words[0].lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise UserError(f"{path}: does not start with a SHA-256 (got {words[0][:20]!r}); the bundle is damaged — "
                        "copy the whole bundle folder again (or retrain)")
    return digest


def load_bundle(folder: str | os.PathLike, device: str | torch.device = "cpu") -> ModelBundle:
    """Load a bundle: check ``model.json``, the weights' SHA-256 and the format version; never unpickle.

    Raises
    ------
    UserError
        Missing or damaged bundle (edited or ill-typed ``model.json``, unusable normalisation, NaN
        weights), checksum mismatch, newer format.
    """
    from .bundle_archive import extract_bundle, is_archive  # a .zip: a Model Zoo package from export_bmz

    if is_archive(folder):
        folder = extract_bundle(folder)
    meta = read_meta(folder)
    folder = bundle_folder(folder)
    meta_path = folder / META
    weights = folder / WEIGHTS
    if not weights.exists():
        raise UserError(f"{folder}: {WEIGHTS} is missing; the bundle is incomplete — copy the whole folder")
    digest = file_sha256(weights)
    expected = meta.get("weights_sha256")
    checksum_file = folder / CHECKSUM
    if checksum_file.exists():
        expected_file = _expected_from_checksum_file(checksum_file)
        if expected and expected_file != expected:
            raise UserError(f"{checksum_file}: disagrees with {META}; the bundle was altered — restore it")
    if digest != expected:
        raise UserError(f"{weights}: SHA-256 {digest[:12]}… does not match {META} ({str(expected)[:12]}…); "
                        "the weights are damaged or were replaced — copy the bundle again")
    try:
        return _from_meta(meta, folder, weights, digest, device)
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise UserError(f"{meta_path}: damaged or incomplete ({what}); restore the bundle from a copy, or "
                        "retrain") from None


def _from_meta(meta: dict, folder: Path, weights: Path, digest: str, device: str | torch.device) -> ModelBundle:
    meta_path = folder / META
    architecture, config = _network_config(meta, folder)
    network = build(architecture, config)
    _load_weights(network, weights, meta_path)
    members = _load_members(meta, folder, architecture, config)
    normalization = meta["normalization"]
    input_normalizer = Normalizer.from_dict(normalization["input"], f"{meta_path}: normalization.input")
    target_normalizer = Normalizer.from_dict(normalization["target"], f"{meta_path}: normalization.target")
    names_in, names_out = meta["input_channel_names"], meta["output_channel_names"]
    for what, names, normalizer, count in (("input", names_in, input_normalizer, config.in_channels),
                                           ("output", names_out, target_normalizer, config.out_channels)):
        if not isinstance(names, list) or len(names) != count or len(normalizer.scale) != count:
            raise UserError(f"{meta_path}: the network has {count} {what} channel(s) but {what}_channel_names is "
                            f"{names!r} and the {what} normalisation has {len(normalizer.scale)} value(s); the bundle "
                            "is damaged — restore it or retrain")
    input_channels = meta.get("input_channels")
    if input_channels is not None and not (isinstance(input_channels, list) and
                                           all(isinstance(c, int) and c >= 0 for c in input_channels)):
        raise UserError(f"{meta_path}: input_channels {input_channels!r} is not a list of channel indices; the "
                        "bundle is damaged — restore it or retrain")
    pixel_size = meta.get("pixel_size_um")
    if pixel_size is not None and (isinstance(pixel_size, bool) or not isinstance(pixel_size, (int, float))
                                   or not 0 < pixel_size < float("inf")):
        raise UserError(f"{meta_path}: pixel_size_um {pixel_size!r} is not a positive number of µm; the bundle is "
                        "damaged — restore it or retrain")
    network.eval().to(device)
    for member in members:
        member.to(device)
    return ModelBundle(
        network=network,
        architecture=architecture,
        input_normalizer=input_normalizer,
        target_normalizer=target_normalizer,
        input_channel_names=[str(n) for n in names_in],
        output_channel_names=[str(n) for n in names_out],
        input_channels=input_channels,
        pixel_size_um=float(pixel_size) if pixel_size is not None else None,
        acquisition=Acquisition.from_description(meta.get("acquisition")),
        training=TrainingRecord.from_dict(meta.get("training")),
        validation=ValidationRecord.from_dict(meta.get("validation")),
        input_domain=InputDomain.from_dict(meta.get("input_domain"), str(meta_path)),
        uncertainty=UncertaintyCalibration.from_dict(meta.get("uncertainty")),
        members=members,
        weights_sha256=digest,
        created=str(meta.get("created", "")),
        package_version=str(meta.get("package_version", "")),
    )


def _network_config(meta: dict, folder: Path) -> tuple[str, NetworkConfig]:
    """The architecture name and its configuration, from format 2 (``network``) or format 1 (``unet``)."""
    architecture = str(meta.get("architecture"))  # a missing name fails in build(): "'None' is not known"
    try:
        if meta["format_version"] >= 2:
            return architecture, config_from_dict(meta["network"])
        old = dict(meta["unet"])  # format 1: a U-Net configuration, SRCNN marked by its family
        if old.pop("family", "unet") == "srcnn":
            keep = ("in_channels", "out_channels", "spatial_dims", "scale", "base_width")
            return architecture, SRCNNConfig(**{k: old[k] for k in keep if k in old})
        return architecture, UNetConfig(**old)
    except (KeyError, TypeError) as exc:
        raise UserError(f"{folder / META}: the network configuration is incomplete or unknown ({exc}); "
                        "the bundle is damaged — retrain or restore it") from None
