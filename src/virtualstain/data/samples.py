"""Paired fields of view in memory, from a CSV manifest or from arrays.

A manifest is a CSV with one row per field of view and the columns

``input``           one or several image paths separated by ``;``, relative to the CSV's folder;
``target``          one or several image paths separated by ``;``;
``input_channels``  optional indices of channels/planes of the (stacked) input to use, e.g. ``0,3``;
``split``           optional ``train``/``val``/``test``;
``group``           optional well or field id; rows of one group always share a split;
``pixel_size_um``   optional lateral pixel size of the **input** in µm;
``scale``           optional integer k ≥ 1: the target is k× larger than the input in Y and X
                    (super-resolution, e.g. DL-SRQPI's 4×-binned intensity → phase); default 1.

Joined files (``actin.tif;nuclei.tif``) are co-registered images of one field: their channels are
stacked in order (file 1's channels, then file 2's, ...), so ``a.tif;b.tif`` equals the pre-merged file
with the same channels, and ``input_channels`` indexes the stacked channels (with a 2-channel ``a.tif``,
index 2 is ``b.tif``'s first channel). Joined files must have one spatial shape; the input's acquisition
metadata is the first file's, and so is its pixel size (the next file's where the first records none;
joined inputs recording different pixel sizes are refused). The sample is named after the first input
file. Without channel names in the files, training names a joined input's channels after its files
(:func:`names_from_files`), and :func:`manifest_sha256` hashes its files whole.

The manifest must be UTF-8 (a UTF-16 or Latin-1 file is refused: "save it as UTF-8"); a row with more
cells than header columns, two rows with the same input (the same file, or the same joined files in the
same order: it would leak into training and validation/test) and a pixel size outside 0.001–100 µm are
refused, naming the line.

Arrays are arranged channels-first: ``(C, Y, X)`` for 2D, ``(C, Z, Y, X)`` for 3D.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import UserError
from .acquisition import Acquisition
from .io import (
    ImageMeta,
    as_float32,
    check_finite,
    check_not_constant,
    read_image,
    read_text_utf8,
    to_channels_first,
    too_large,
)
from .units import PIXEL_SIZE_RANGE_UM, check_length_um

SPLITS = ("train", "val", "test")
KNOWN_COLUMNS = {"input", "target", "input_channels", "split", "group", "pixel_size_um", "scale"}


@dataclass
class Sample:
    """One paired field of view.

    Attributes
    ----------
    name : str
        Identifier used for outputs (the input file's stem for manifests).
    input : numpy.ndarray
        ``(C_in, Y, X)`` or ``(C_in, Z, Y, X)`` float32 image.
    target : numpy.ndarray
        ``(C_out, ...)`` float32 image with the same spatial shape, or ``scale``× larger in Y and X.
    split : str or None
        ``"train"``, ``"val"``, ``"test"`` or None (decided later).
    group : str
        Rows of one group share a split.
    pixel_size_um : float or None
        Lateral pixel size of the input in µm (the target's is ``pixel_size_um / scale``).
    source : str
        Where the sample came from (for error messages).
    input_paths, target_paths : list of str
        The files read for the input and the target, in stacking order (empty for arrays).
    input_channels : list of int or None
        The channels picked from the stacked channels of ``input_paths`` (None: all).
    input_file_channels : list of int
        How many channels each of ``input_paths`` holds, before ``input_channels`` picks.
    scale : int
        Target pixels per input pixel along Y and X.
    acquisition : Acquisition
        How the input was acquired, from its file's metadata (e.g. ``binning``, ``defocus_um`` of a
        simulated image).
    input_channel_names, target_channel_names : list of str
        Channel names stored in the files (empty when a file has none).
    """

    name: str
    input: np.ndarray
    target: np.ndarray
    split: str | None = None
    group: str = ""
    pixel_size_um: float | None = None
    source: str = "<array>"
    input_paths: list[str] = field(default_factory=list)
    target_paths: list[str] = field(default_factory=list)
    input_channels: list[int] | None = None
    input_file_channels: list[int] = field(default_factory=list)
    scale: int = 1
    acquisition: Acquisition = field(default_factory=Acquisition)
    input_channel_names: list[str] = field(default_factory=list)
    target_channel_names: list[str] = field(default_factory=list)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.input.shape[1:])


def parse_channels(text: str | None, where: str) -> list[int] | None:
    """Parse ``"0,3"`` into ``[0, 3]``; empty gives None."""
    if text is None or str(text).strip() == "":
        return None
    try:
        values = [int(v) for v in str(text).replace(";", ",").split(",") if v.strip() != ""]
    except ValueError:
        raise UserError(f"{where}: input_channels {text!r} is not a list of integers; write e.g. 0,3") from None
    if any(v < 0 for v in values):
        raise UserError(f"{where}: input_channels {text!r} has negative indices; use 0-based indices such as 0,3")
    return values


class _ImageFile(NamedTuple):
    path: str | os.PathLike
    array: np.ndarray  # channels-first, the file's dtype
    meta: ImageMeta


def _joined(paths: Iterable[str | os.PathLike]) -> str:
    return ";".join(str(p) for p in paths)


def _read_files(paths: Sequence[str | os.PathLike], spatial_dims: int, what: str, fix: str) -> list[_ImageFile]:
    """Read co-registered files channels-first; files of different spatial shapes are refused (``fix`` says how)."""
    files = []
    for p in paths:
        array, meta = read_image(p)
        files.append(_ImageFile(p, to_channels_first(array, meta, spatial_dims, p), meta))
    if len({f.array.shape[1:] for f in files}) > 1:
        desc = ", ".join(f"{f.path} {f.array.shape[1:]}" for f in files)
        raise UserError(f"{what} files differ in shape: {desc}; {fix}")
    return files


def _stacked_names(files: list[_ImageFile]) -> list[str]:
    """The files' channel names in stacking order; empty unless every file names each of its channels."""
    if all(len(f.meta.channel_names) == len(f.array) for f in files):
        return [n for f in files for n in f.meta.channel_names]
    return []


def _stack_channels(files: list[_ImageFile], channels: list[int] | None) -> np.ndarray:
    """The files' channels stacked in order (file 1's, then file 2's, ...), or those ``channels`` of the stack.

    The picked channels are converted to float32 and checked finite, naming their file; a single file with every
    channel picked is not copied.
    """
    located = [(k, c) for k, f in enumerate(files) for c in range(len(f.array))]
    if channels is not None:
        missing = [c for c in channels if c >= len(located)]
        if missing:
            holder = "the file has" if len(files) == 1 else "the joined files have"
            raise UserError(f"{_joined(f.path for f in files)}: channels {missing} requested but {holder} {len(located)} "
                            f"channel(s)/plane(s) (indices 0..{len(located) - 1}); fix input_channels / --input-channels")
        located = [located[c] for c in channels]
    pieces = []
    for k, run in itertools.groupby(located, key=lambda kc: kc[0]):
        f, picked = files[k], [c for _, c in run]
        piece = as_float32(f.array if picked == list(range(len(f.array))) else f.array[picked], f.path)
        check_finite(piece, f.path)
        pieces.append(piece)
    if len(pieces) == 1:
        return pieces[0]
    try:
        return np.concatenate(pieces, axis=0)
    except MemoryError:
        raise too_large(_joined(f.path for f in files), (len(located), *files[0].array.shape[1:])) from None


def _joined_pixel_size(files: list[_ImageFile]) -> float | None:
    """The pixel size the first file records (or, failing that, the next that does); files that disagree are refused."""
    recorded = [(f.path, f.meta.pixel_size_um) for f in files if f.meta.pixel_size_um]
    if not recorded:
        return None
    first = recorded[0][1]
    if any(not math.isclose(px, first, rel_tol=1e-3) for _, px in recorded):
        desc = ", ".join(f"{p} {px:g} µm" for p, px in recorded)
        raise UserError(f"input files record different pixel sizes: {desc}; the files joined in a row's input must be "
                        "co-registered images of one field — resample them to one pixel size (or correct the files' "
                        "metadata)")
    return first


def _path_list(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str | os.PathLike]:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def _load_input_files(paths: str | os.PathLike | Sequence[str | os.PathLike], spatial_dims: int,
                      channels: list[int] | None, selected_names: list[str] | None
                      ) -> tuple[np.ndarray, ImageMeta, list[int]]:
    """:func:`load_input`, plus how many channels each file holds."""
    files = _read_files(_path_list(paths), spatial_dims, "input",
                        "all files joined in a row's input must be co-registered images of one size — crop or "
                        "resample them to one shape")
    names = _stacked_names(files)
    if selected_names and names == list(selected_names):
        channels = None
    array = _stack_channels(files, channels)
    check_not_constant(array, _joined(f.path for f in files), "input image")
    first = files[0].meta
    meta = ImageMeta(axes=first.axes, pixel_size_um=_joined_pixel_size(files), channel_names=names,
                     description=first.description)
    return array, meta, [len(f.array) for f in files]


def load_input(paths: str | os.PathLike | Sequence[str | os.PathLike], spatial_dims: int, channels: list[int] | None,
               selected_names: list[str] | None = None) -> tuple[np.ndarray, ImageMeta]:
    """Read an input image, or several joined ones, as float32 channels-first, validated (finite, not constant).

    The channels of several files are stacked in order (file 1's channels, then file 2's, ...), and ``channels``
    index the stacked channels, unless the stacked channel names already equal ``selected_names`` (files written
    with exactly the model's input channels, e.g. ``RUN/test/input``).

    Returns
    -------
    array : numpy.ndarray
        ``(C, Y, X)`` or ``(C, Z, Y, X)`` float32.
    meta : ImageMeta
        The first file's axes and description, the stacked channel names (empty unless every file names its
        channels) and the pixel size the first file records (or, failing that, the next that does).

    Raises
    ------
    UserError
        A missing or bad file, files of different shapes or recorded pixel sizes, absent channels, NaN or a
        constant input.
    """
    array, meta, _ = _load_input_files(paths, spatial_dims, channels, selected_names)
    return array, meta


def load_target(paths: Sequence[str | os.PathLike], spatial_dims: int) -> tuple[np.ndarray, list[str]]:
    """Read one or several target images and stack their channels (float32).

    Returns the stacked array and the files' channel names (empty unless every file names its channels).
    """
    files = _read_files(paths, spatial_dims, "target", "all stains of a row must be co-registered images of one size")
    return _stack_channels(files, None), _stacked_names(files)


def names_from_files(paths: Sequence[str | os.PathLike], file_channels: Sequence[int],
                     channels: list[int] | None = None) -> list[str]:
    """Default channel names from file names, for the channels the files stack.

    Each file gives its stem (its folder's name when stems repeat), with the channel index appended for the
    channels of a multi-channel file (``stack0``, ``stack1``); ``channels`` pick among the stacked names. Empty when
    ``file_channels`` does not give one count per file or the names would repeat.
    """
    if len(file_channels) != len(paths):
        return []
    files = [Path(p) for p in paths]
    labels = [p.stem for p in files] if len({p.stem for p in files}) == len(files) else [p.parent.name for p in files]
    names = [label if n == 1 else f"{label}{c}" for label, n in zip(labels, file_channels) for c in range(n)]
    if channels is not None:
        names = [names[c] for c in channels]
    return names if len(set(names)) == len(names) else []


def expected_target_shape(input_spatial: tuple[int, ...], scale: int) -> tuple[int, ...]:
    """Spatial shape of the target of an input: Y and X times ``scale``, Z unchanged."""
    return tuple(input_spatial[:-2]) + tuple(n * scale for n in input_spatial[-2:])


def check_pair(sample: Sample) -> None:
    """Check that the target's spatial shape is the input's (times ``scale`` in Y and X)."""
    got, want = sample.target.shape[1:], expected_target_shape(sample.input.shape[1:], sample.scale)
    if got == want:
        return
    where_in = _joined(sample.input_paths) or sample.source
    where_tg = ";".join(sample.target_paths) or sample.source
    ratios = {t / i for t, i in zip(got[-2:], sample.input.shape[-2:])} if len(got) == len(want) else set()
    if sample.scale == 1 and len(ratios) == 1 and (k := ratios.pop()) > 1 and float(k).is_integer():
        raise UserError(f"input {where_in} has spatial shape {sample.input.shape[1:]} but target {where_tg} has {got}, "
                        f"{int(k)}× larger; for super-resolution add a column scale with {int(k)} to the manifest "
                        f"(or scale={int(k)} in Python), otherwise give co-registered images of the same size")
    extra = f" × scale {sample.scale} = {want}" if sample.scale != 1 else ""
    raise UserError(
        f"input {where_in} has spatial shape {sample.input.shape[1:]}{extra} but target {where_tg} has "
        f"{got}; the pair must be co-registered images of the same size (times the scale in Y and X) "
        "(for 2D models, stacks become channels: check input_channels)"
    )


def parse_scale(text: str | None, where: str) -> int:
    """The ``scale`` column: an integer ≥ 1 (empty → 1)."""
    if text is None or str(text).strip() == "":
        return 1
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 1 and value.is_integer()):
        raise UserError(f"{where}: scale {text!r} must be a whole number ≥ 1 (target pixels per input pixel, e.g. 4)")
    return int(value)


def read_manifest(csv_path: str | os.PathLike, spatial_dims: int = 2, input_channels: list[int] | None = None) -> list[Sample]:
    """Load every field of view of a CSV manifest.

    Parameters
    ----------
    csv_path : path-like
        The manifest.
    spatial_dims : {2, 3}
        How to read stacks: as channels (2) or as volumes (3).
    input_channels : list of int, optional
        Default channel selection for rows that leave ``input_channels`` empty. Indices count the stacked channels
        of a row's input: with ``a.tif;b.tif`` and a 2-channel ``a.tif``, index 2 is ``b.tif``'s first channel.

    Raises
    ------
    UserError
        Missing or non-UTF-8 manifest, missing columns, extra cells, empty manifest, duplicate inputs, bad values
        or bad files.
    """
    csv_path = Path(csv_path)
    text = read_text_utf8(csv_path, "manifest", "give the path of a CSV with columns input,target")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    lined_rows: list[tuple[int, dict[str, str]]] = []
    try:
        columns = [c.strip() for c in (reader.fieldnames or [])]
        for raw in reader:
            if None in raw:  # more cells than header columns (csv puts the rest under the key None)
                extra = [str(v) for v in raw[None]]  # type: ignore[index]
                raise UserError(f"{csv_path}, line {reader.line_num}: {len(columns) + len(extra)} cells but the header "
                                f"has {len(columns)} columns (extra: {extra}); remove the extra cells, or quote a path "
                                "that contains a comma (\"a,b.tif\")")
            lined_rows.append((reader.line_num, {(k or "").strip(): (v or "").strip() for k, v in raw.items()}))
    except csv.Error as exc:
        raise UserError(f"{csv_path}, line {reader.line_num}: not a valid CSV ({exc}); fix the quoting") from None
    for required in ("input", "target"):
        if required not in columns:
            raise UserError(f"{csv_path}: missing column {required!r} (found {columns}); "
                            "the header must name at least input,target")
    unknown = set(columns) - KNOWN_COLUMNS
    if unknown:
        raise UserError(f"{csv_path}: unknown column(s) {sorted(unknown)}; allowed: {sorted(KNOWN_COLUMNS)}")
    lined_rows = [(n, r) for n, r in lined_rows if any(r.values())]
    if not lined_rows:
        raise UserError(f"{csv_path}: the manifest has no rows; add one row per field of view (input,target)")
    base = csv_path.parent
    _check_no_duplicate_inputs(csv_path, base, lined_rows)
    samples: list[Sample] = []
    for i, (line, row) in enumerate(lined_rows, start=2):
        where = f"{csv_path}, line {line}"
        in_paths, tg_paths = _joined_paths(base, row.get("input", "")), _joined_paths(base, row.get("target", ""))
        if not in_paths or not tg_paths:
            raise UserError(f"{where}: empty input or target; every row needs both paths")
        split = row.get("split") or None
        if split is not None and split not in SPLITS:
            raise UserError(f"{where}: split {split!r} is not one of {SPLITS}; fix the split column")
        px = parse_pixel_size(row.get("pixel_size_um"), where)
        channels = parse_channels(row.get("input_channels"), where) or input_channels
        scale = parse_scale(row.get("scale"), where)
        x, meta, file_channels = _load_input_files(in_paths, spatial_dims, channels, None)
        y, target_names = load_target(tg_paths, spatial_dims)
        sample = Sample(
            name=in_paths[0].stem, input=x, target=y, split=split, group=row.get("group") or f"row{i}",
            pixel_size_um=px if px is not None else meta.pixel_size_um, source=where,
            input_paths=[str(p) for p in in_paths], target_paths=[str(p) for p in tg_paths], input_channels=channels,
            input_file_channels=file_channels, scale=scale, acquisition=Acquisition.from_description(meta.description),
            input_channel_names=meta.channel_names if channels is None and len(meta.channel_names) == len(x) else [],
            target_channel_names=target_names,
        )
        check_pair(sample)
        samples.append(sample)
    _check_consistent_channels(samples, csv_path)
    return samples


def parse_pixel_size(text: str | None, where: str) -> float | None:
    """The ``pixel_size_um`` column: a plausible positive length in µm (empty → None, taken from the file)."""
    if text is None or str(text).strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{where}: pixel_size_um {text!r} is not a number (µm per pixel, e.g. 0.65)") from None
    low, high = PIXEL_SIZE_RANGE_UM
    return check_length_um(value, f"{where}: pixel_size_um", low=low, high=high)


def _joined_paths(base: Path, cell: str) -> list[Path]:
    """The files of a manifest cell that joins one or several paths with ``;``, relative to ``base``."""
    return [base / part.strip() for part in cell.split(";") if part.strip()]


def _check_no_duplicate_inputs(csv_path: Path, base: Path, lined_rows: list[tuple[int, dict[str, str]]]) -> None:
    """Refuse two rows with the same input (resolved; joined files as one input): it would leak into training and
    validation/test."""
    seen: dict[tuple[Path, ...], int] = {}
    for line, row in lined_rows:
        resolved = tuple(p.resolve() for p in _joined_paths(base, row.get("input", "")))
        if not resolved:
            continue
        if resolved in seen:
            groups = {r.get("group", "") for n, r in lined_rows if n in (seen[resolved], line)}
            also = " (in different groups)" if len(groups) > 1 else ""
            raise UserError(f"{csv_path}: lines {seen[resolved]} and {line} both use the input {_joined(resolved)}{also}; "
                            "the same image would leak into training and validation/test — remove the duplicate row "
                            "(one row per field of view; several stains go in one row's target, joined with ';')")
        seen[resolved] = line


def common_scale(samples: list[Sample], where: str | os.PathLike = "samples") -> int:
    """The super-resolution factor shared by every sample (mixed factors are refused)."""
    scales = sorted({s.scale for s in samples})
    if len(scales) > 1:
        raise UserError(f"{where}: rows have different scales {scales}; one model learns one super-resolution "
                        "factor — train one model per scale")
    return scales[0]


def common_input_channels(samples: list[Sample]) -> list[int] | None:
    """The channel selection shared by every sample (recorded in the model), or None if they differ or none."""
    selections = {tuple(s.input_channels) if s.input_channels is not None else None for s in samples}
    if len(selections) == 1:
        (only,) = selections
        return list(only) if only is not None else None
    return None


def _check_consistent_channels(samples: list[Sample], where: str | os.PathLike) -> None:
    n_in = {s.input.shape[0] for s in samples}
    n_out = {s.target.shape[0] for s in samples}
    if len(n_in) > 1 or len(n_out) > 1:
        raise UserError(f"{where}: rows have different numbers of channels (inputs {sorted(n_in)}, targets "
                        f"{sorted(n_out)}); every row must give the same channels (use input_channels)")


def samples_from_arrays(
    inputs: list[np.ndarray],
    targets: list[np.ndarray],
    splits: list[str | None] | None = None,
    groups: list[str] | None = None,
    pixel_size_um: float | None = None,
    names: list[str] | None = None,
    scale: int = 1,
) -> list[Sample]:
    """Build samples from channels-first arrays (the Python equivalent of a manifest).

    Parameters
    ----------
    inputs, targets : list of numpy.ndarray
        ``(C, Y, X)`` or ``(C, Z, Y, X)`` arrays, paired by position.
    splits, groups, names : list, optional
        Per-sample split (``train``/``val``/``test``), group and name.
    pixel_size_um : float, optional
        Lateral pixel size of the inputs in µm.
    scale : int
        Targets are ``scale``× larger than the inputs in Y and X (super-resolution).
    """
    if len(inputs) != len(targets):
        raise UserError(f"{len(inputs)} input arrays but {len(targets)} target arrays; give one target per input")
    if not inputs:
        raise UserError("no arrays given; pass at least one input/target pair")
    if pixel_size_um is not None:
        if isinstance(pixel_size_um, bool) or not isinstance(pixel_size_um, (int, float, np.floating, np.integer)):
            raise UserError(f"pixel_size_um {pixel_size_um!r} is not a number (µm per pixel, e.g. 0.65)")
        low, high = PIXEL_SIZE_RANGE_UM
        pixel_size_um = check_length_um(float(pixel_size_um), "pixel_size_um", low=low, high=high)
    try:
        whole = not isinstance(scale, bool) and float(scale).is_integer() and scale >= 1
    except (TypeError, ValueError):
        whole = False
    if not whole:
        raise UserError(f"scale {scale!r} must be a whole number ≥ 1 (target pixels per input pixel, e.g. 4)")
    scale = int(scale)
    samples = []
    for i, (x, y) in enumerate(zip(inputs, targets)):
        name = names[i] if names else f"array{i}"
        x = as_float32(np.asarray(x), name)
        y = as_float32(np.asarray(y), name)
        check_finite(x, name)
        check_finite(y, name)
        check_not_constant(x, name, "input image")
        s = Sample(name=name, input=x, target=y, split=splits[i] if splits else None,
                   group=groups[i] if groups else name, pixel_size_um=pixel_size_um, source=name, scale=scale)
        check_pair(s)
        samples.append(s)
    _check_consistent_channels(samples, "arrays")
    return samples


def manifest_sha256(csv_path: str | os.PathLike | None, samples: list[Sample]) -> str:
    """Hash of the training data: the manifest text, every array's bytes and every file joined in an input.

    The files of a joined input are hashed whole, so that changing any of them, even in channels that
    ``input_channels`` leaves out, invalidates a resume; a single input file is covered by its array.
    """
    h = hashlib.sha256()
    if csv_path is not None:
        h.update(Path(csv_path).read_bytes())
    for s in samples:
        h.update(np.ascontiguousarray(s.input).tobytes())
        h.update(np.ascontiguousarray(s.target).tobytes())
        if len(s.input_paths) > 1:
            for path in s.input_paths:
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
    return h.hexdigest()
