"""Read microscopy images and write float32 TIFFs with their metadata.

Readers return numpy arrays with the file's own axes (e.g. ``(Y, X)``,
``(Z, Y, X)`` or ``(C, Y, X)``) plus an :class:`ImageMeta`. Writers take
``(C, Y, X)`` or ``(C, Z, Y, X)`` arrays and write OME-TIFF with the pixel size
in µm and the channel names, atomically.

Interleaved samples (an RGB TIFF is ``(Y, X, 3)``, axes ``YXS``) are moved first, as channels.
Complex pixels are refused rather than cast to real, and an image too large for memory is refused
with its size (:func:`too_large`) instead of a ``MemoryError``.
"""

from __future__ import annotations

import codecs
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import tifffile

from .._atomic import atomic_path
from ..errors import UserError

TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIXES = (".png",)


@dataclass
class ImageMeta:
    """What a file says about itself.

    Attributes
    ----------
    axes : str
        The file's axes, e.g. ``"YX"``, ``"ZYX"``, ``"CYX"`` (tifffile's letters;
        ``"Q"``/``"I"`` unknown leading axes are reported as ``"Z"`` for stacks).
    pixel_size_um : float or None
        Lateral pixel size in µm, when the file records it.
    channel_names : list of str
        Channel names, when the file records them.
    description : dict
        Key/values that :func:`write_tiff` stored as JSON in the OME description
        (e.g. ``wavelength_um`` and ``unit`` of a phase map); empty otherwise.
    """

    axes: str
    pixel_size_um: float | None = None
    channel_names: list[str] = field(default_factory=list)
    description: dict = field(default_factory=dict)


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: file not found; check the path (manifest paths are relative to the CSV's folder)")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an image file; give the path of a .tif/.tiff/.png file")


def _ome_description(tif: tifffile.TiffFile) -> dict:
    match = re.search(r"<Description>(.*?)</Description>", tif.ome_metadata or "", re.S)
    if not match:
        return {}
    try:
        value = json.loads(html.unescape(match.group(1)))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _ome_meta(tif: tifffile.TiffFile) -> tuple[float | None, list[str]]:
    xml = tif.ome_metadata or ""
    size = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', xml)
    unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', xml)
    px = float(size.group(1)) if size else None
    if px is not None and unit and unit.group(1) in ("nm",):
        px /= 1000.0
    names = re.findall(r'<Channel [^>]*Name="([^"]*)"', xml)
    return px, names


def _resolution_meta(tif: tifffile.TiffFile) -> float | None:
    page = cast(tifffile.TiffPage, tif.pages[0])  # tifffile loads the first page as a TiffPage, never a TiffFrame
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    num, den = tag.value
    if not num:
        return None
    per_unit = num / den
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).lower()
    res_unit = page.tags.get("ResolutionUnit")
    if unit in ("micron", "um", "µm", "\\u00b5m"):
        return 1.0 / per_unit
    if res_unit is not None and int(res_unit.value) == 3:  # centimetre
        size = 1e4 / per_unit
        return size if size < 100 else None
    return None


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageMeta]:
    """Read a TIFF (multi-page, OME, ImageJ, compressed) or PNG image, or one OME-Zarr plate position.

    Parameters
    ----------
    path : path-like
        Image file, or a position ``PLATE.zarr/ROW/COLUMN/FIELD`` of one time point (read as ``CYX``, or
        ``CZYX`` with several planes; :mod:`~virtualstain.data.ome_zarr`).

    Returns
    -------
    array : numpy.ndarray
        The pixel data with the file's own axes (see ``meta.axes``).
    meta : ImageMeta
        Axes, pixel size (µm) and channel names when recorded.

    Raises
    ------
    UserError
        Missing, unreadable, corrupt or unsupported file.
    """
    path = Path(path)
    if path.is_dir():
        from .ome_zarr import split_position

        plate, position = split_position(path)
        if position is not None:
            return _read_plate_position(plate, position, path)
    _check_exists(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                check_real_dtype(series.dtype, path)
                try:
                    array = series.asarray()
                except MemoryError:
                    raise too_large(path, series.shape, series.dtype) from None
                axes = series.axes
                description = _ome_description(tif) if tif.is_ome else {}
                if tif.is_ome:
                    px, names = _ome_meta(tif)
                else:
                    px, names = _resolution_meta(tif), []
                    labels = (tif.imagej_metadata or {}).get("Labels")
                    if isinstance(labels, (list, tuple)):
                        names = [str(x) for x in labels]
        except UserError:
            raise
        except MemoryError:
            raise too_large(path, (), None) from None
        except Exception as exc:  # tifffile raises many kinds for broken files
            raise UserError(
                f"{path}: not a readable TIFF ({type(exc).__name__}: {exc}); "
                "the file may be truncated or corrupt — re-export it from the acquisition software"
            ) from None
        if "S" in axes and axes.index("S") != 0 and array.ndim == len(axes):
            # interleaved samples (RGB TIFFs are (Y, X, 3), axes YXS): samples are channels, and channels come first
            array = np.moveaxis(array, axes.index("S"), 0)
            axes = "S" + axes.replace("S", "")
        axes = axes.replace("Q", "Z").replace("I", "Z").replace("S", "C")
    elif suffix in PNG_SUFFIXES:
        try:
            from PIL import Image

            with Image.open(path) as img:
                try:
                    array = np.asarray(img)
                except MemoryError:
                    raise too_large(path, (img.height, img.width, len(img.getbands())), np.uint8) from None
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"{path}: not a readable PNG ({exc}); re-save the image") from None
        axes = "YX" if array.ndim == 2 else "YXC"
        if array.ndim == 3:
            array = np.moveaxis(array, -1, 0)
            axes = "CYX"
        px, names, description = None, [], {}
    else:
        raise UserError(f"{path}: unsupported file type {suffix!r}; convert it to TIFF (.tif) or PNG")
    if array.size == 0:
        raise UserError(f"{path}: the image is empty (shape {array.shape}); check the file")
    return array, ImageMeta(axes=axes, pixel_size_um=px, channel_names=names, description=description)


def _read_plate_position(plate: Path, position, path: Path) -> tuple[np.ndarray, ImageMeta]:
    """One time point of a plate position as a file-like image (``CYX`` or ``CZYX``)."""
    from .ome_zarr import read_position

    image = read_position(plate, position)
    if image.array.shape[0] != 1:
        raise UserError(f"{path}: a time-lapse position ({image.array.shape[0]} time points); predict the plate with "
                        "`virtualstain predict MODEL PLATE.zarr --out OUT.zarr` for every frame")
    array = image.array[0]
    if array.shape[1] == 1:
        return array[:, 0], ImageMeta("CYX", image.pixel_size_um, image.channel_names)
    return array, ImageMeta("CZYX", image.pixel_size_um, image.channel_names)


def too_large(path: str | os.PathLike, shape: tuple[int, ...], dtype=np.float32) -> UserError:
    """The error for an image that does not fit in memory: its size, and the fix."""
    if not shape:
        return UserError(f"{path}: the image does not fit in memory; cut it into smaller fields (e.g. 4096×4096 tiles) "
                         "or use a smaller field of view")
    dtype = np.dtype(dtype or np.float32)
    gib = float(np.prod(shape, dtype=np.float64)) * dtype.itemsize / 2 ** 30
    return UserError(f"{path}: an image of shape {tuple(int(n) for n in shape)} needs {gib:.1f} GiB as {dtype.name} "
                     "and does not fit in memory; cut it into smaller fields (e.g. 4096×4096 tiles) or use a smaller "
                     "field of view")


def check_real_dtype(dtype, path: str | os.PathLike) -> None:
    """Refuse complex pixel types (casting them to real would silently drop the imaginary part)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise UserError(f"{path}: the pixels are complex ({dtype.name}); virtualstain needs real-valued images — "
                        "save the phase (numpy.angle) or the amplitude (numpy.abs) of the field instead")
    if dtype.kind not in "biuf":
        raise UserError(f"{path}: pixels of type {dtype.name} are not numbers; save the image with integer or "
                        "floating-point pixels")


def as_float32(array: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """``array`` as float32 (no copy when it already is), refusing complex pixels and images too large for memory."""
    if not isinstance(array, np.ndarray):
        array = np.asarray(array)
    check_real_dtype(array.dtype, path)
    try:
        return array.astype(np.float32, copy=False)
    except MemoryError:
        raise too_large(path, array.shape) from None


def read_text_utf8(path: str | os.PathLike, what: str, give: str) -> str:
    """Read a text file (a manifest, a config) that must be UTF-8 (a UTF-8 byte-order mark is allowed).

    ``what`` names the file in messages; ``give`` says what to give instead when it is missing or a folder.

    Raises
    ------
    UserError
        The file is missing, a folder, unreadable, or UTF-16 / Latin-1 / another encoding: "save it as UTF-8".
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: {what} not found; {give}")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; {give}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what} ({exc.strerror or exc}); check the path and its permissions") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data[:4096]:
        raise UserError(f"{path}: the {what} is saved as UTF-16 (or another wide encoding); save it as UTF-8 "
                        "(e.g. Excel: 'CSV UTF-8'; editors: Save As, encoding UTF-8)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}: the {what} is not UTF-8 (byte 0x{data[exc.start]:02x} on line {line}, e.g. Latin-1 or "
                        "Windows-1252 'é' or 'µ'); save it as UTF-8 (e.g. Excel: 'CSV UTF-8'; editors: Save As, "
                        "encoding UTF-8)") from None


def to_channels_first(array: np.ndarray, meta: ImageMeta, spatial_dims: int, path: str | os.PathLike) -> np.ndarray:
    """Arrange a file's array as ``(C, Y, X)`` (2D) or ``(C, Z, Y, X)`` (3D).

    For 2D models every leading axis (planes of a z-stack, channels, RGB) becomes a
    channel, so ``input_channels`` can pick planes of a z-stack. For 3D models a
    ``(Z, Y, X)`` file is one channel; ``(C, Z, Y, X)`` keeps its channels.

    Raises
    ------
    UserError
        The array has too few or too many dimensions for ``spatial_dims``.
    """
    if spatial_dims == 2:
        if array.ndim == 2:
            return array[None]
        if array.ndim == 3:
            return array
        if array.ndim == 4:
            return array.reshape(-1, *array.shape[-2:])
        raise UserError(f"{path}: {array.ndim}-D image (shape {array.shape}) cannot be used by a 2D model; "
                        "give (Y, X), (C, Y, X) or (Z, Y, X) images")
    if array.ndim == 3:
        return array[None]
    if array.ndim == 4:
        if meta.axes.startswith("Z") and "C" in meta.axes[1:2]:
            array = np.swapaxes(array, 0, 1)
        return array
    raise UserError(f"{path}: {array.ndim}-D image (shape {array.shape}) cannot be used by a 3D model; "
                    "give (Z, Y, X) or (C, Z, Y, X) stacks")


def channels_first_by_axes(array: np.ndarray, axes: str) -> np.ndarray:
    """Add a channel axis to files that have none ((Y, X) images, (Z, Y, X) stacks are one channel)."""
    return array if "C" in axes else array[None]


def check_finite(array: np.ndarray, path: str | os.PathLike) -> None:
    """Raise a :class:`UserError` if ``array`` holds NaN or infinite values."""
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise UserError(f"{path}: {bad} pixels are NaN or infinite; replace them (e.g. with the background value) "
                        "before training or prediction")


def check_not_constant(array: np.ndarray, path: str | os.PathLike, what: str = "image") -> None:
    """Raise a :class:`UserError` if ``array`` has a single value everywhere."""
    lo, hi = np.min(array), np.max(array)
    if lo == hi:
        raise UserError(f"{path}: the {what} is constant (every pixel = {lo}); it carries no information — "
                        "check the exposure and the channel")


def write_tiff(
    path: str | os.PathLike,
    array: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    channel_names: list[str] | None = None,
    description: dict | None = None,
    time_lapse: bool = False,
) -> Path:
    """Write a float32 OME-TIFF atomically.

    Parameters
    ----------
    path : path-like
        Output file (``.tif``).
    array : numpy.ndarray
        ``(C, Y, X)`` or ``(C, Z, Y, X)`` data (``(T, C, Y, X)`` with ``time_lapse``); written as float32.
    pixel_size_um : float, optional
        Lateral pixel size in µm, stored as OME ``PhysicalSizeX/Y``.
    channel_names : list of str, optional
        One name per channel, stored as OME channel names.
    description : dict, optional
        Extra key/values stored in the OME ``Description`` (JSON).
    time_lapse : bool
        ``array`` is ``(T, C, Y, X)``: frames of channels.
    """
    array = np.asarray(array, dtype=np.float32)
    if time_lapse and array.ndim != 4:
        raise ValueError(f"write_tiff(time_lapse=True) expects (T, C, Y, X), got shape {array.shape}")
    if array.ndim not in (3, 4):
        raise ValueError(f"write_tiff expects (C, Y, X) or (C, Z, Y, X), got shape {array.shape}")
    axes = "TCYX" if time_lapse else "CYX" if array.ndim == 3 else "CZYX"
    metadata: dict = {"axes": axes}
    if pixel_size_um:
        metadata.update(PhysicalSizeX=float(pixel_size_um), PhysicalSizeXUnit="µm",
                        PhysicalSizeY=float(pixel_size_um), PhysicalSizeYUnit="µm")
    channels = array.shape[1] if time_lapse else array.shape[0]
    if channel_names:
        if len(channel_names) != channels:
            raise ValueError(f"{len(channel_names)} channel names for {channels} channels")
        metadata["Channel"] = {"Name": list(channel_names)}
    if description:
        metadata["Description"] = json.dumps(description)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, ome=True, metadata=metadata, compression="zlib", photometric="minisblack")
    return Path(path)


def write_labels(path: str | os.PathLike, labels: np.ndarray, *, pixel_size_um: float | None = None,
                 time_lapse: bool = False) -> Path:
    """Write an instance-label image (0 = background) as an integer OME-TIFF, atomically.

    uint16 when the labels fit, else uint32; ``(Y, X)`` or ``(Z, Y, X)``, or ``(T, Y, X)`` with ``time_lapse``.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    dtype = np.uint16 if labels.max(initial=0) < 2 ** 16 else np.uint32
    metadata: dict = {"axes": "YX" if labels.ndim == 2 else "TYX" if time_lapse else "ZYX"}
    if pixel_size_um:
        metadata.update(PhysicalSizeX=float(pixel_size_um), PhysicalSizeXUnit="µm",
                        PhysicalSizeY=float(pixel_size_um), PhysicalSizeYUnit="µm")
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels.astype(dtype), ome=True, metadata=metadata, compression="zlib",
                         photometric="minisblack")
    return Path(path)


def output_path(out_dir: Path, input_path: Path) -> Path:
    """Where the output for ``input_path`` goes in ``out_dir``: the input's file name, as ``.tif``
    (a plate position ``P.zarr/B/3/0``: ``P_B3_0.tif``)."""
    from .ome_zarr import split_position

    plate, position = split_position(input_path)
    if position is not None:
        return out_dir / f"{plate.name.removesuffix('.zarr')}_{position.row}{position.column}_{position.field}.tif"
    name = input_path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out_dir / f"{name}.tif"
