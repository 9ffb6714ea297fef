"""OME-Zarr (NGFF 0.4) high-content-screening plates in and out, through ome-zarr-py.

A plate is a Zarr group with ``plate`` metadata (rows, columns, wells); each well lists its fields; each
field (a *position*, ``ROW/COLUMN/FIELD`` such as ``A/1/0``) is an image group with ``multiscales`` metadata
over the axes ``t, c, z, y, x`` (lengths in µm on ``y``/``x``/``z``) and ``omero`` channel labels. Only the
full-resolution level is read or written: analysis needs no pyramid, and napari shows a single level.

Writing is per position and atomic: the position's group is written under a temporary name in its well
and renamed when complete, and the well's field list is updated after that, so a killed run leaves only
whole positions (and a rerun can skip them). ome-zarr-py is the OME's own implementation, and the reader
napari's OME-Zarr plugin uses; iohub (VisCy's) needs Python ≥ 3.12 from 0.3 on.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

AXES = ("t", "c", "z", "y", "x")
_POSITION = re.compile(r"^(?P<row>[A-Za-z]+)/(?P<column>\d+)/(?P<field>\w+)$")


def _zarr():
    try:
        import zarr
        from ome_zarr.format import FormatV04
    except ImportError:
        raise UserError('reading and writing OME-Zarr needs ome-zarr-py: pip install "virtualstain[zarr]"') from None
    return zarr, FormatV04()


@dataclass(frozen=True, order=True)
class Position:
    """One field of view of a plate: well ``row``/``column`` and ``field`` (``A/1/0``)."""

    row: str
    column: str
    field: str = "0"

    @property
    def path(self) -> str:
        return f"{self.row}/{self.column}/{self.field}"

    @property
    def well(self) -> str:
        return f"{self.row}/{self.column}"


@dataclass
class PositionImage:
    """A position's full-resolution image and what the plate says about it.

    Attributes
    ----------
    array : numpy.ndarray
        ``(T, C, Z, Y, X)``.
    channel_names : list of str
    pixel_size_um : float or None
        Lateral (Y, X) pixel size in µm.
    z_step_um : float or None
    attributes : dict
        The image group's ``virtualstain`` attribute (provenance), empty for other writers.
    """

    array: np.ndarray
    channel_names: list[str]
    pixel_size_um: float | None = None
    z_step_um: float | None = None
    attributes: dict = field(default_factory=dict)


def is_ome_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Zarr group (a plate, a well or a position) rather than a file."""
    p = Path(path)
    return p.is_dir() and any((p / name).exists() for name in (".zattrs", ".zgroup", "zarr.json"))


def split_position(path: str | os.PathLike) -> tuple[Path, Position | None]:
    """``PLATE.zarr/A/1/0`` → (``PLATE.zarr``, Position A/1/0); a plate root → (root, None)."""
    p = Path(path)
    parts = p.parts
    if len(parts) >= 4 and _POSITION.match("/".join(parts[-3:])) and is_ome_zarr(Path(*parts[:-3])):
        return Path(*parts[:-3]), Position(*parts[-3:])
    return p, None


def plate_positions(plate: str | os.PathLike) -> list[Position]:
    """Every field of every well of ``plate``, in row, column, field order.

    Raises
    ------
    UserError
        ``plate`` is not an OME-Zarr plate.
    """
    zarr, _ = _zarr()
    try:
        root = zarr.open_group(str(plate), mode="r")
        wells = dict(root.attrs)["plate"]["wells"]
    except (KeyError, FileNotFoundError, ValueError, TypeError) as exc:
        raise UserError(f"{plate}: not an OME-Zarr plate ({type(exc).__name__}: {exc}); give a plate made by "
                        "`virtualstain convert` or another NGFF writer, or a position PLATE.zarr/A/1/0") from None
    out = []
    for well in wells:
        row, column = well["path"].split("/")
        images = dict(root[well["path"]].attrs).get("well", {}).get("images", [])
        out += [Position(row, column, str(image["path"])) for image in images]
    return sorted(out)


def plate_wells(plate: str | os.PathLike) -> list[str]:
    """The wells (``ROW/COLUMN``) a plate's metadata lists, with or without fields written."""
    zarr, _ = _zarr()
    attrs: dict = dict(zarr.open_group(str(plate), mode="r").attrs)
    return [str(w["path"]) for w in attrs["plate"]["wells"]]


def read_position(plate: str | os.PathLike, position: Position) -> PositionImage:
    """The full-resolution ``(T, C, Z, Y, X)`` image of one position, with channel names and pixel sizes.

    Raises
    ------
    UserError
        The position is missing, or its metadata is not NGFF 0.4 multiscales over t, c, z, y, x.
    """
    zarr, _ = _zarr()
    where = f"{plate}/{position.path}"
    try:
        group = zarr.open_group(str(plate), mode="r")[position.path]
        attrs = dict(group.attrs)
        multiscale = attrs["multiscales"][0]
        axes = [a["name"] if isinstance(a, dict) else a for a in multiscale["axes"]]
        dataset = multiscale["datasets"][0]
        array = np.asarray(group[dataset["path"]])
    except (KeyError, FileNotFoundError, ValueError, TypeError, IndexError) as exc:
        raise UserError(f"{where}: not a readable OME-Zarr position ({type(exc).__name__}: {exc}); check the "
                        "plate (e.g. with napari) or convert the files again") from None
    if tuple(axes) != AXES:
        raise UserError(f"{where}: axes {axes}; virtualstain reads positions with axes {list(AXES)}")
    scale = next((t["scale"] for t in dataset.get("coordinateTransformations", []) if t.get("type") == "scale"),
                 [1.0] * 5)
    units = {a["name"]: a.get("unit") for a in multiscale["axes"] if isinstance(a, dict)}
    lateral = float(scale[-1]) if units.get("x") == "micrometer" else None
    z_step = float(scale[2]) if units.get("z") == "micrometer" else None
    labels = [c.get("label", f"c{i}") for i, c in enumerate(attrs.get("omero", {}).get("channels", []))]
    names = labels if len(labels) == array.shape[1] else [f"c{i}" for i in range(array.shape[1])]
    return PositionImage(array, names, lateral, z_step, dict(attrs.get("virtualstain", {})))


def create_plate(plate: str | os.PathLike, positions: list[Position], name: str = "") -> None:
    """Create an empty plate with the wells of ``positions`` (fields are added by :func:`write_position`)."""
    zarr, fmt = _zarr()
    from ome_zarr.writer import write_plate_metadata

    rows = sorted({p.row for p in positions})
    columns = sorted({p.column for p in positions}, key=int)
    wells = sorted({p.well for p in positions})
    root = zarr.open_group(str(plate), mode="w", zarr_format=2)
    write_plate_metadata(root, rows, columns, wells, fmt=fmt, name=name or Path(plate).stem)
    for well in wells:
        root.require_group(well).attrs["well"] = {"images": [], "version": fmt.version}


def write_position(plate: str | os.PathLike, position: Position, image: PositionImage) -> None:
    """Write one position's image into an existing plate, atomically, and list it in its well.

    Equals :func:`write_position_data` followed by :func:`register_position`; parallel writers call the first
    on workers and the second in one process, so no two processes edit a well's metadata at once.
    """
    write_position_data(plate, position, image)
    register_position(plate, position)


def write_position_data(plate: str | os.PathLike, position: Position, image: PositionImage) -> None:
    """Write a position's image group under a temporary name in its well, then rename it to the field's name.

    Chunks are one (Y, X) plane per time point, channel and plane, so positions and frames can be written and
    read independently. The well's field list is not touched (see :func:`register_position`).
    """
    zarr, fmt = _zarr()
    from ome_zarr.writer import write_multiscale

    array = np.asarray(image.array)
    if array.ndim != 5:
        raise ValueError(f"position images are (T, C, Z, Y, X); got shape {array.shape}")
    well_dir = Path(plate) / position.well
    tmp_name = f".{position.field}.part"
    shutil.rmtree(well_dir / tmp_name, ignore_errors=True)
    shutil.rmtree(well_dir / position.field, ignore_errors=True)
    root = zarr.open_group(str(plate), mode="r+")
    group = root.require_group(f"{position.well}/{tmp_name}")
    px, dz = image.pixel_size_um or 1.0, image.z_step_um or 1.0
    units = {"t": None, "c": None, "z": "micrometer" if image.z_step_um else None,
             "y": "micrometer" if image.pixel_size_um else None, "x": "micrometer" if image.pixel_size_um else None}
    axes = [{"name": a, "type": {"t": "time", "c": "channel"}.get(a, "space"), **({"unit": units[a]} if units[a] else {})}
            for a in AXES]
    write_multiscale([array], group, fmt=fmt, axes=axes,
                     coordinate_transformations=[[{"type": "scale", "scale": [1.0, 1.0, dz, px, px]}]],
                     storage_options={"chunks": (1, 1, 1, *array.shape[-2:])})
    group.attrs["omero"] = {"channels": [{"label": n, "active": True} for n in image.channel_names]}
    if image.attributes:
        group.attrs["virtualstain"] = image.attributes
    os.replace(well_dir / tmp_name, well_dir / position.field)


def register_position(plate: str | os.PathLike, position: Position) -> None:
    """List a written position in its well's metadata (the mark that it is complete)."""
    zarr, fmt = _zarr()
    well = zarr.open_group(str(plate), mode="r+")[position.well]
    images = [i for i in dict(well.attrs).get("well", {}).get("images", []) if i["path"] != position.field]
    well.attrs["well"] = {"images": sorted(images + [{"path": position.field}], key=lambda i: i["path"]),
                          "version": fmt.version}


def written_positions(plate: str | os.PathLike) -> set[Position]:
    """Positions of ``plate`` that are completely written (listed by their well); empty if there is no plate."""
    if not is_ome_zarr(plate):
        return set()
    try:
        return set(plate_positions(plate))
    except UserError:
        return set()


_WELL_NAME = re.compile(r"(?<![A-Za-z])([A-Pa-p])[-_]?(\d{1,2})(?!\d)")


def position_for_file(name: str, index: int) -> Position:
    """The well a file goes to: from a name containing a well id (``…_B03_…`` → B/3), else A/(index + 1)."""
    match = _WELL_NAME.search(Path(name).stem)
    if match:
        return Position(match.group(1).upper(), str(int(match.group(2))), "0")
    return Position("A", str(index + 1), "0")


def convert_tiffs(files: list[str | os.PathLike], plate: str | os.PathLike) -> list[Position]:
    """Write image files (2D, one or more channels each) into a new plate, one position per file.

    Each file goes to the well its name contains (``…B03…`` → B/3; further files of that well become fields
    1, 2…), else to A/1, A/2… in the given order. Channel names and the pixel size come from the files.

    Raises
    ------
    UserError
        No files, a bad file (unreadable, NaN or infinite values), or files that disagree in channel count;
        all files are read before anything is written.
    """
    from .io import check_finite, read_image, to_channels_first

    if not files:
        raise UserError("no image files given to convert; pass one or more TIFF files")
    images: list[PositionImage] = []
    positions: list[Position] = []
    wells: dict[str, int] = {}
    for i, path in enumerate(files):
        array, meta = read_image(path)
        data = to_channels_first(np.asarray(array, np.float32), meta, 2, path)
        check_finite(data, path)
        if images and data.shape[0] != images[0].array.shape[1]:
            raise UserError(f"{path}: {data.shape[0]} channel(s) but {files[0]} has {images[0].array.shape[1]}; a plate "
                            "holds one channel layout — convert such files into separate plates")
        base = position_for_file(Path(path).name, i)
        n = wells.get(base.well, 0)
        wells[base.well] = n + 1
        positions.append(Position(base.row, base.column, str(n)))
        names = meta.channel_names if len(meta.channel_names) == data.shape[0] else [f"c{c}" for c in range(data.shape[0])]
        images.append(PositionImage(data[None, :, None], names, meta.pixel_size_um,
                                    attributes={"source": str(Path(path).name)}))
    create_plate(plate, positions)
    for position, image in zip(positions, images):
        write_position(plate, position, image)
    return positions
