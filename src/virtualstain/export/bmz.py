"""Export a model bundle as a BioImage Model Zoo package (``bioimageio.spec`` model description 0.5, a ``.zip``).

The package holds the network as ONNX (opset 17) and TorchScript weights that map the *normalised* input to the
*normalised* prediction, with the bundle's normalisation written as Model Zoo pre- and postprocessing:

============================================ ========================================================================
input normaliser                             preprocessing
============================================ ========================================================================
scope ``dataset`` (any method)               ``scale_linear`` per channel: gain 1/scale, offset −offset/scale;
                                             then ``clip`` [0, 1] when the normaliser clips (``minmax``)
scope ``image``, ``percentile``              ``scale_range`` per channel over the space axes (its percentiles)
scope ``image``, ``zscore``                  ``zero_mean_unit_variance`` per channel over the space axes
scope ``image``, ``minmax``                  ``scale_range`` 0 / 100 %, then ``clip`` [0, 1]
============================================ ========================================================================

followed by ``ensure_dtype`` float32; the postprocessing is ``scale_linear`` (gain = target scale, offset = target
offset per output channel) and ``ensure_dtype`` float32. The Model Zoo's image-scope operations add ε = 10⁻⁶ to
the denominator (virtualstain adds none) and use every pixel (virtualstain subsamples images beyond 2 million
pixels per channel); both differences are far below the model's error.

Spatial axes have a parameterised size (``min`` and ``step``: the network's size multiple, ``min`` raised so that
the output keeps at least one pixel after cropping the halo); the output's y and x reference the input's, scaled
by the super-resolution factor, with a halo of the tiling margin (in output pixels) on every space axis. The
bundle itself (``model.json``, ``weights.safetensors``, ``weights.sha256``) travels as attachments, so
:func:`virtualstain.load_model` reads the ``.zip`` back as a bundle (:mod:`~virtualstain.models.bundle_archive`).

Offline use: nothing in the description is a URL (the citations are DOIs, which are not resolved), so
validation — which :func:`bioimageio.core.test_model` always runs with ``perform_io_checks`` on — never needs the
network. Set ``BIOIMAGEIO_CACHE_PATH`` to move the Model Zoo's download cache, ``BIOIMAGEIO_PERFORM_IO_CHECKS=0``
to skip hashing of the package files when only loading.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .._atomic import atomic_path, check_output_suffix
from .._version import __version__
from ..data.normalization import Normalizer
from ..errors import UserError
from ..models.bundle import CHECKSUM, META, WEIGHTS, ModelBundle, load_bundle, save_bundle
from ..models.bundle_archive import extract_bundle, is_archive
from ..models.bundle_meta import bundle_folder, file_sha256, seal

__all__ = ["CODE_LICENSE", "DEFAULT_LICENSE", "export_bmz", "expected_output", "min_input_size", "preprocess"]

log = logging.getLogger(__name__)

#: Licence of virtualstain's code (noted in the package's documentation).
CODE_LICENSE = "BSD-3-Clause"
#: Default licence of the exported weights (the package's ``license``).
DEFAULT_LICENSE = "CC-BY-4.0"
#: Denominator ε of the Model Zoo's ``scale_range`` and ``zero_mean_unit_variance`` (bioimageio.core's value).
BMZ_EPS = 1e-6

_PICS = ("Kandel, M. E., He, Y. R., Lee, Y. J. et al. Phase imaging with computational specificity (PICS) for "
         "measuring dry mass changes in sub-cellular compartments. Nat. Commun. 11, 6256 (2020).",
         "10.1038/s41467-020-20062-x")
_FNET = ("Ounkomol, C., Seshamani, S., Maleckar, M. M., Collman, F. & Johnson, G. R. Label-free prediction of "
         "three-dimensional fluorescence images from transmitted-light microscopy. Nat. Methods 15, 917-920 (2018).",
         "10.1038/s41592-018-0111-2")
_SRQPI = ("Zhou, Y. et al. Pixel-super-resolved quantitative phase imaging from a single aliased intensity image "
          "with deep learning. Laser Photonics Rev. (2024).", "10.1002/lpor.202300488")
_CITES = {"fnet": [_FNET, _PICS], "unet": [_FNET, _PICS], "sr_unet": [_SRQPI, _PICS], "srcnn": [_SRQPI, _PICS]}
_LIMITATION = ("virtualstain's mirror border and exact tiling are not part of the Model Zoo runner; predictions "
               "near the image edges differ")


def _require() -> None:
    for module, extra in (("bioimageio.spec", "bioimageio.spec"), ("onnx", '"virtualstain[onnx]"')):
        try:
            __import__(module)
        except ImportError:
            raise UserError(f"exporting to the BioImage Model Zoo needs the {module} package: pip install {extra}") \
                from None


# ---------------------------------------------------------------------------------------------------------------
# sizes and the Model Zoo's processing, in numpy


def min_input_size(bundle: ModelBundle) -> tuple[int, ...]:
    """Smallest input size per spatial axis in the package: a multiple of the size multiple with at least
    one output pixel left after cropping the halo (``size > 2·margin``)."""
    multiple, margin = bundle.config.size_multiple(), bundle.margin
    return tuple(max(m, -(-(2 * h + 1) // m) * m) for m, h in zip(multiple, margin))


def _halo(bundle: ModelBundle) -> tuple[int, ...]:
    """Output halo per spatial axis (output pixels): the tiling margin, times the scale on y and x."""
    cfg = bundle.config
    return tuple(h * (cfg.scale if i >= cfg.spatial_dims - 2 else 1) for i, h in enumerate(bundle.margin))


def _per_channel(values, ndim: int) -> np.ndarray:
    """Per-channel values shaped to broadcast over a ``(B, C, ...)`` array (float64, as xarray computes)."""
    return np.asarray(values, np.float64).reshape((1, -1) + (1,) * (ndim - 2))


def preprocess(normalizer: Normalizer, batch: np.ndarray) -> np.ndarray:
    """The package's preprocessing applied to a ``(B, C, [Z,] Y, X)`` batch, as bioimageio.core computes it."""
    x = np.asarray(batch, np.float32)
    space = tuple(range(2, x.ndim))
    if normalizer.scope == "dataset":
        out = x * _per_channel(1.0 / np.asarray(normalizer.scale, np.float64), x.ndim) + \
            _per_channel(-np.asarray(normalizer.offset, np.float64) / np.asarray(normalizer.scale, np.float64), x.ndim)
    elif normalizer.method == "zscore":
        mean = x.mean(axis=space, keepdims=True, dtype=np.float64)
        std = np.sqrt(((x - mean) ** 2).mean(axis=space, keepdims=True))
        out = (x - mean) / (std + BMZ_EPS)
    else:
        q = (0.0, 100.0) if normalizer.method == "minmax" else normalizer.percentiles
        lo = np.percentile(x, q[0], axis=space, keepdims=True)
        hi = np.percentile(x, q[1], axis=space, keepdims=True)
        out = (x - lo) / (hi - lo + BMZ_EPS)
    if normalizer.clip:
        out = np.clip(out, 0.0, 1.0)
    return np.asarray(out, np.float32)


def expected_output(bundle: ModelBundle, batch: np.ndarray) -> np.ndarray:
    """What the package computes for the raw ``(B, C, [Z,] Y, X)`` batch: preprocessing, network, postprocessing."""
    from ..inference.engines import TorchEngine

    device = torch.device("cpu")
    engine = TorchEngine(bundle.inference_network(device), device)
    normalised = preprocess(bundle.input_normalizer, batch)
    with torch.inference_mode():
        prediction = np.stack([engine(sample) for sample in normalised])
    target = bundle.target_normalizer
    out = prediction * _per_channel(target.scale, prediction.ndim) + _per_channel(target.offset, prediction.ndim)
    return np.asarray(out, np.float32)


def _synthetic_input(bundle: ModelBundle) -> np.ndarray:
    """A deterministic image of blobs on a gradient, in the input's raw units, of a valid size."""
    cfg = bundle.config
    size = list(min_input_size(bundle))
    multiple = cfg.size_multiple()
    side = max(max(size[-2:]), 2 * max(multiple[-2:]))  # square: a 2:1 cover side by side
    size[-2:] = [-(-side // m) * m for m in multiple[-2:]]
    rng = np.random.default_rng(0)
    grids = np.meshgrid(*[np.linspace(0.0, 1.0, n) for n in size], indexing="ij")
    image = np.zeros(size)
    for _ in range(12):
        centre = rng.uniform(0.1, 0.9, len(size))
        radius = rng.uniform(0.05, 0.15)
        image += np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre)) / (2 * radius ** 2))
    image = image / image.max() + 0.2 * grids[-1] + 0.05 * rng.standard_normal(size)
    normalizer = bundle.input_normalizer
    channels = [float(o) + float(s) * (image if c == 0 else np.roll(image, 7 * c, axis=-1))
                for c, (o, s) in enumerate(zip(normalizer.offset, normalizer.scale))]
    return np.stack(channels).astype(np.float32)


def _fit_test_input(bundle: ModelBundle, image: np.ndarray) -> np.ndarray:
    """``image`` (raw, ``(C, [Z,] Y, X)``) cropped around its centre to a valid package size."""
    cfg = bundle.config
    image = np.asarray(image, np.float32)
    if image.ndim != cfg.spatial_dims + 1 or image.shape[0] != cfg.in_channels:
        raise UserError(f"test_input has shape {image.shape}; the model takes (C, {'Z, ' * (cfg.spatial_dims == 3)}Y, X) "
                        f"with C = {cfg.in_channels}")
    smallest = min_input_size(bundle)
    keep = []
    for n, m, lo in zip(image.shape[1:], cfg.size_multiple(), smallest):
        if n < lo:
            raise UserError(f"test_input of shape {image.shape} is too small; each spatial axis needs at least "
                            f"{list(smallest)} px (the tiling margin on both sides plus one pixel)")
        size = n // m * m
        keep.append(slice((n - size) // 2, (n - size) // 2 + size))
    if not np.isfinite(image).all():
        raise UserError("test_input holds NaN or infinite values; give a finite image")
    index = (slice(None), *keep)
    return np.ascontiguousarray(image[index])


# ---------------------------------------------------------------------------------------------------------------
# cover, documentation


def _to_uint8(plane: np.ndarray) -> np.ndarray:
    plane = np.asarray(plane, np.float64)
    lo, hi = np.percentile(plane, (0.5, 99.5))
    return np.clip(np.round((plane - lo) / (hi - lo if hi > lo else 1.0) * 255.0), 0, 255).astype(np.uint8)


def _cover_image(test_in: np.ndarray, test_out: np.ndarray, scale: int) -> np.ndarray:
    """Input (first channel) | prediction (up to 3 channels as RGB), 8-bit, from ``(1, C, ...)`` tensors."""
    def plane(t):  # (C, Y, X): the middle z plane of a 3D tensor
        t = t[0]
        return t[:, t.shape[1] // 2] if t.ndim == 4 else t

    left = _to_uint8(plane(test_in)[0])
    left = np.repeat(np.repeat(left, scale, axis=0), scale, axis=1)
    right_planes = plane(test_out)
    channels = [_to_uint8(p) for p in right_planes[:3]]
    right = channels[0][..., None].repeat(3, -1) if len(channels) == 1 else \
        np.stack(channels + [np.zeros_like(channels[0])] * (3 - len(channels)), axis=-1)
    gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([left[..., None].repeat(3, -1), gap, right], axis=1)


def _cover_from_array(cover: np.ndarray) -> np.ndarray:
    cover = np.asarray(cover)
    if cover.ndim not in (2, 3) or (cover.ndim == 3 and cover.shape[-1] not in (3, 4)):
        raise UserError(f"cover has shape {cover.shape}; give a (H, W) grey or (H, W, 3|4) colour image")
    if cover.dtype == np.uint8:
        return cover
    if cover.ndim == 2:
        return _to_uint8(cover)
    return np.stack([_to_uint8(cover[..., c]) for c in range(cover.shape[-1])], axis=-1)


def _json_block(data) -> str:
    return "```json\n" + json.dumps(data, indent=2, default=str) + "\n```"


def _documentation(bundle: ModelBundle, name: str, license: str, torchscript: bool, test_shape) -> str:
    cfg = bundle.config
    k = cfg.scale
    pixel = bundle.pixel_size_um
    pixel_text = (f"{pixel:g} µm per input pixel" + (f", {pixel / k:g} µm per output pixel" if k > 1 else "")
                  if pixel else "not recorded")
    normalizer = bundle.input_normalizer
    lines = [
        f"# {name}",
        "",
        f"A virtual stain exported by virtualstain {__version__}: the network predicts "
        f"{', '.join(bundle.output_channel_names)} from {', '.join(bundle.input_channel_names)}.",
        "",
        "## Architecture",
        "",
        f"- `{bundle.architecture}` ({type(bundle.network).__name__}), {cfg.spatial_dims}D, "
        f"{sum(p.numel() for p in bundle.network.parameters()):,} parameters",
        f"- network configuration: `{json.dumps(cfg.to_dict())}`",
        f"- super-resolution factor: {k} (output {k}× larger in y and x)" if k > 1 else "- output size = input size",
        f"- input size: a multiple of {list(cfg.size_multiple())} px per spatial axis; the package asks at least "
        f"{list(min_input_size(bundle))} px",
        f"- tiling margin (halo): {list(bundle.margin)} input px per side",
        f"- weights: ONNX (opset 17){' and TorchScript' if torchscript else ''}; the virtualstain bundle "
        f"({META}, {WEIGHTS}, {CHECKSUM}) is attached, SHA-256 of the weights `{bundle.weights_sha256}`",
        "",
        "## Channels and pixel size",
        "",
        f"- input channels: {', '.join(bundle.input_channel_names)}",
        f"- output channels: {', '.join(bundle.output_channel_names)}",
        f"- pixel size: {pixel_text}",
        "",
        "## Normalisation",
        "",
        f"- input: {normalizer.method}, scope {normalizer.scope}"
        + (f", percentiles {list(normalizer.percentiles)}" if normalizer.method == "percentile" else "")
        + (", clipped to [0, 1]" if normalizer.clip else "")
        + f"; offset {normalizer.offset}, scale {normalizer.scale}",
        f"- output: y = y' · {bundle.target_normalizer.scale} + {bundle.target_normalizer.offset} "
        "(the prediction is in the training targets' units)",
        "",
        "## Training data and record",
        "",
        _json_block(bundle.training.to_dict()),
        "",
        "## Validation",
        "",
        "Metrics of the saved weights on the validation split (the best loss and Pearson r per output channel):",
        "",
        _json_block(bundle.validation.to_dict()),
        "",
        f"The package's own test tensors ({list(test_shape)}) reproduce with the Model Zoo's "
        "`bioimageio.core.test_model`.",
        "",
        "## Limitations",
        "",
        f"- {_LIMITATION}.",
        "- The Model Zoo's per-image normalisation adds ε = 1e-6 to its denominator and uses every pixel; "
        "virtualstain adds none and subsamples images beyond 2 million pixels per channel.",
        "- The model only knows the kind of samples, optics and pixel size it was trained on; check predictions "
        "against real stains before relying on them.",
        "",
        "## Use with virtualstain",
        "",
        "```python",
        "import virtualstain",
        "bundle = virtualstain.load_model('this-package.zip')  # the attached bundle, checksum verified",
        "```",
        "",
        "## Licence",
        "",
        f"Weights: {license}. virtualstain's code: {CODE_LICENSE}.",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# export


def _torchscript(bundle: ModelBundle, path: Path) -> bool:
    """Trace the inference network to ``path``; False (and a warning) when tracing fails or differs."""
    cfg = bundle.config
    network = bundle.inference_network(torch.device("cpu")).float().eval()
    multiple = cfg.size_multiple()
    example = torch.zeros((1, cfg.in_channels, *(2 * m for m in multiple)))
    other = torch.rand((2, cfg.in_channels, *(3 * m for m in multiple)), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(network, example, check_trace=False)
            same = torch.allclose(traced(other), network(other), rtol=1e-4, atol=1e-5)
            if same:
                traced.save(str(path))
    except Exception as exc:  # tracing is best effort: ONNX alone is a complete package
        log.warning("TorchScript tracing of %s failed (%s: %s); the package has ONNX weights only",
                    bundle.architecture, type(exc).__name__, exc)
        return False
    if not same:
        log.warning("the traced TorchScript network of %s differs from the network at another size; the package "
                    "has ONNX weights only", bundle.architecture)
    return same


def _attach_bundle(bundle: ModelBundle, folder: Path, source: Path | None) -> Path:
    """The bundle's files in ``folder/bundle``: copied from ``source`` (its saved folder) as they are, else saved
    from a copy of the bundle object (``bundle`` itself is not changed; a saved bundle keeps its creation time)."""
    target = folder / "bundle"
    if source is not None:
        target.mkdir()
        for name in (META, WEIGHTS, CHECKSUM):
            if (source / name).is_file():
                shutil.copyfile(source / name, target / name)
        meta = json.loads((target / META).read_text(encoding="utf-8"))
        if meta.get("weights_sha256") != bundle.weights_sha256 or file_sha256(target / WEIGHTS) != bundle.weights_sha256:
            raise UserError(f"{source}: the bundle changed while it was exported; export it again")
        if meta.get("ensemble_members"):  # the package carries the first member only
            meta["ensemble_members"] = []
            (target / META).write_text(json.dumps(seal(meta), indent=2), encoding="utf-8")
        return target
    copy = dataclasses.replace(bundle, members=[])
    save_bundle(copy, target)
    if bundle.created:
        meta = json.loads((target / META).read_text(encoding="utf-8"))
        meta["created"] = bundle.created
        (target / META).write_text(json.dumps(seal(meta), indent=2), encoding="utf-8")
    return target




def _descr_name(bundle: ModelBundle) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+- ()")
    text = f"virtualstain {bundle.architecture} {'+'.join(bundle.input_channel_names)} to " \
           f"{'+'.join(bundle.output_channel_names)}"
    text = "".join(c if c in allowed else "_" for c in text)[:64].strip()
    return text if len(text) >= 5 else "virtualstain model"


def export_bmz(bundle: ModelBundle | str | os.PathLike, out: str | os.PathLike, *, cover: np.ndarray | None = None,
               test_input: np.ndarray | None = None, license: str = DEFAULT_LICENSE, name: str | None = None,
               torchscript: bool = True) -> Path:
    """Write ``bundle`` as a BioImage Model Zoo package (``.zip``), atomically.

    Parameters
    ----------
    bundle : ModelBundle or path
        The model: a bundle folder (or its ``model.json``, or a package ``.zip``), whose files are attached as they
        are; or a bundle object, saved anew for the package (safetensors does not write byte-identical files, so
        the attached weights' SHA-256 may differ from ``bundle.weights_sha256``; the tensors are the same).
    out : path
        The ``.zip`` to write.
    cover : array, optional
        The cover image, (H, W) grey or (H, W, 3|4) colour (8-bit, or scaled to it); default: the test input beside
        the prediction.
    test_input : array, optional
        A raw ``(C, [Z,] Y, X)`` image in the input's units for the package's test, cropped around its centre to a
        valid size; default: a deterministic synthetic image of the smallest valid square size.
    license : str
        SPDX licence of the weights (the package's ``license``).
    name : str, optional
        The package's name (letters, digits, ``_+- ()``); default from the architecture and channels.
    torchscript : bool
        Also include TorchScript weights (traced; left out with a warning where tracing fails).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    UserError
        bioimageio.spec or onnx missing, ``out`` not a ``.zip``, an unusable ``test_input`` or ``cover``, a
        normalisation the Model Zoo cannot express, a description the Model Zoo refuses.
    """
    _require()
    from bioimageio.spec import ValidationContext, save_bioimageio_package
    from bioimageio.spec.model import v0_5
    from PIL import Image

    from ..inference.onnx_graph import OPSET, export_onnx

    out = check_output_suffix(out, (".zip",), "a BioImage Model Zoo package", flag="out")
    source = None
    if not isinstance(bundle, ModelBundle):
        source = extract_bundle(bundle) if is_archive(bundle) else bundle_folder(bundle)
        bundle = load_bundle(source)  # checked: model.json hash, weights SHA-256
    cfg = bundle.config
    normalizer, target = bundle.input_normalizer, bundle.target_normalizer
    if target.scope != "dataset":
        raise UserError(f"the target normaliser has scope {target.scope!r}; only 'dataset' scope can be inverted")
    if normalizer.scope == "image" and normalizer.method == "percentile" and not \
            (0 <= normalizer.percentiles[0] < 100 and 1 < normalizer.percentiles[1] <= 100):
        raise UserError(f"percentiles {list(normalizer.percentiles)} cannot be written as the Model Zoo's scale_range "
                        "(low in [0, 100), high in (1, 100])")
    name = name or _descr_name(bundle)
    spatial = list("zyx"[-cfg.spatial_dims:])
    k = cfg.scale
    halo = _halo(bundle)
    smallest = min_input_size(bundle)
    pixel = bundle.pixel_size_um

    raw = _fit_test_input(bundle, test_input) if test_input is not None else _synthetic_input(bundle)
    test_in = raw[None]
    test_out = expected_output(bundle, test_in)

    with tempfile.TemporaryDirectory(prefix="virtualstain-bmz-") as tmp_name:
        tmp = Path(tmp_name)
        bundle_dir = _attach_bundle(bundle, tmp, source)
        export_onnx(bundle, tmp / "weights.onnx")
        has_ts = torchscript and _torchscript(bundle, tmp / "weights_torchscript.pt")
        np.save(tmp / "test_input.npy", test_in)
        np.save(tmp / "test_output.npy", test_out)
        picture = _cover_from_array(cover) if cover is not None else _cover_image(test_in, test_out, k)
        Image.fromarray(picture).save(tmp / "cover.png")
        saved = json.loads((bundle_dir / META).read_text(encoding="utf-8"))
        shown = dataclasses.replace(bundle, weights_sha256=saved["weights_sha256"])
        (tmp / "README.md").write_text(_documentation(shown, name, license, has_ts, test_in.shape), encoding="utf-8")

        def space_axis(axis: str, i: int, output: bool):
            lateral = axis in "yx"
            unit = "micrometer" if pixel and lateral else None
            scale_in = float(pixel) if pixel and lateral else 1.0
            scale = scale_in / k if (output and lateral) else scale_in
            if not output:
                return v0_5.SpaceInputAxis(id=v0_5.AxisId(axis), unit=unit, scale=scale,
                                           size=v0_5.ParameterizedSize(min=smallest[i], step=cfg.size_multiple()[i]))
            size = v0_5.SizeReference(tensor_id=v0_5.TensorId("input"), axis_id=v0_5.AxisId(axis))
            if halo[i] > 0:
                return v0_5.SpaceOutputAxisWithHalo(id=v0_5.AxisId(axis), unit=unit, scale=scale, size=size,
                                                    halo=halo[i])
            return v0_5.SpaceOutputAxis(id=v0_5.AxisId(axis), unit=unit, scale=scale, size=size)

        def tensor_fields(tensor: str, description: str, names: list[str], output: bool) -> dict:
            """The fields the input and the output tensor descriptions share."""
            return {"id": v0_5.TensorId(tensor), "description": description, "data": float32,
                    "axes": [v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=[str(n) for n in names]),
                             *[space_axis(a, i, output) for i, a in enumerate(spatial)]],
                    "test_tensor": v0_5.FileDescr(source=Path(f"test_{tensor}.npy"))}

        channel = v0_5.AxisId("channel")
        space_ids = [v0_5.AxisId(a) for a in spatial]
        preprocessing: list = []
        if normalizer.scope == "dataset":
            scale = np.asarray(normalizer.scale, np.float64)
            preprocessing.append(v0_5.ScaleLinearDescr(kwargs=v0_5.ScaleLinearAlongAxisKwargs(
                axis=channel, gain=[float(g) for g in 1.0 / scale],
                offset=[float(o) for o in -np.asarray(normalizer.offset, np.float64) / scale])))
        elif normalizer.method == "zscore":
            preprocessing.append(v0_5.ZeroMeanUnitVarianceDescr(
                kwargs=v0_5.ZeroMeanUnitVarianceKwargs(axes=space_ids, eps=BMZ_EPS)))
        else:
            low, high = (0.0, 100.0) if normalizer.method == "minmax" else map(float, normalizer.percentiles)
            preprocessing.append(v0_5.ScaleRangeDescr(kwargs=v0_5.ScaleRangeKwargs(
                axes=space_ids, min_percentile=low, max_percentile=high, eps=BMZ_EPS)))
        if normalizer.clip:
            preprocessing.append(v0_5.ClipDescr(kwargs=v0_5.ClipKwargs(min=0.0, max=1.0)))
        preprocessing.append(v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32")))
        postprocessing = [
            v0_5.ScaleLinearDescr(kwargs=v0_5.ScaleLinearAlongAxisKwargs(
                axis=channel, gain=[float(s) for s in target.scale], offset=[float(o) for o in target.offset])),
            v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32")),
        ]
        float32 = v0_5.IntervalOrRatioDataDescr(type="float32")
        with ValidationContext(root=tmp, perform_io_checks=True, log_warnings=False):
            weights_ts = None
            if has_ts:
                weights_ts = v0_5.TorchscriptWeightsDescr(source=Path("weights_torchscript.pt"),
                                                          pytorch_version=v0_5.Version(torch.__version__.split("+")[0]))
            cites = _CITES.get(bundle.architecture, [_PICS])
            tags = ["in-silico-labeling", "virtual-staining", "label-free", "transmission-light-microscopy",
                    f"{cfg.spatial_dims}d", "cells", "pytorch", "onnx", "virtualstain", bundle.architecture]
            if bundle.architecture in ("pics", "fnet", "unet", "sr_unet", "cgan"):
                tags.append("unet")
            if k > 1:
                tags.append("super-resolution")
            config = {"virtualstain": {"version": __version__, "architecture": bundle.architecture,
                                       "bundle_files": [META, WEIGHTS, CHECKSUM], "code_license": CODE_LICENSE,
                                       "weights_sha256": saved["weights_sha256"], "tiling_margin_px": list(bundle.margin),
                                       "scale": k, "limitations": _LIMITATION}}
            try:
                descr = v0_5.ModelDescr(
                    name=name,
                    description=(f"Virtual stain: predicts {', '.join(bundle.output_channel_names)} from "
                                 f"{', '.join(bundle.input_channel_names)} ({bundle.architecture}, "
                                 f"{cfg.spatial_dims}D{f', {k}x super-resolution' if k > 1 else ''}); exported by "
                                 f"virtualstain {__version__}.")[:512],
                    authors=[v0_5.Author(name="virtualstain")],
                    cite=[v0_5.CiteEntry(text=text, doi=v0_5.Doi(doi)) for text, doi in cites],
                    license=license,
                    tags=tags,
                    covers=[v0_5.FileDescr(source=Path("cover.png"))],
                    documentation=v0_5.FileDescr(source=Path("README.md")),
                    attachments=[v0_5.FileDescr(source=Path("bundle") / f) for f in (META, WEIGHTS, CHECKSUM)],
                    timestamp=v0_5.Datetime(_dt.datetime.now(_dt.timezone.utc)),
                    inputs=[v0_5.InputTensorDescr(
                        **tensor_fields("input", "label-free input in its raw units (normalised by the preprocessing)",
                                        bundle.input_channel_names, False),
                        preprocessing=preprocessing)],
                    outputs=[v0_5.OutputTensorDescr(
                        **tensor_fields("output", "predicted stain in the training targets' units",
                                        bundle.output_channel_names, True),
                        postprocessing=postprocessing)],
                    weights=v0_5.WeightsDescr(
                        onnx=v0_5.OnnxWeightsDescr(source=Path("weights.onnx"), opset_version=OPSET,
                                                   parent="torchscript" if has_ts else None),
                        torchscript=weights_ts),
                    config=v0_5.Config(**config),
                )
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise UserError(f"{out}: the BioImage Model Zoo refuses the description ({exc})") from None
        with atomic_path(out) as part:  # outside the context: the written package is checked from its own root
            try:
                save_bioimageio_package(descr, output_path=part)
            except ValueError as exc:
                raise UserError(f"{out}: the written package does not validate ({exc})") from None
    return out

