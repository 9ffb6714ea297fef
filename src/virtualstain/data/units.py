"""Physical units at the edges: plausible lengths in µm, and the unit lengths are reported in.

Lengths are µm everywhere in virtualstain. A value far outside the plausible range is
almost always another unit (a wavelength of 633 given in nm), so it is refused with the
flag's name and the fix. When an image's pixel size is unknown, lengths stay in pixels:
:func:`length_unit` names the unit and :func:`length_key` builds the matching column name,
so a column never says ``_um`` while it holds pixels.
"""

from __future__ import annotations

from typing import Literal, overload

from ..errors import UserError

#: Plausible illumination wavelengths, µm (UV to near infrared).
WAVELENGTH_RANGE_UM = (0.2, 2.0)
#: Plausible pixel sizes in the sample, µm.
PIXEL_SIZE_RANGE_UM = (1e-3, 100.0)


@overload
def check_length_um(value: float | None, flag: str, *, low: float, high: float, required: Literal[True] = ...) -> float: ...
@overload
def check_length_um(value: float | None, flag: str, *, low: float, high: float, required: bool) -> float | None: ...
def check_length_um(value: float | None, flag: str, *, low: float, high: float, required: bool = True) -> float | None:
    """Refuse a missing or implausible length (e.g. nm given where µm is expected), naming the flag."""
    if value is None:
        if required:
            raise UserError(f"{flag} is required (µm) and the file does not record it; add {flag}")
        return None
    if not low <= value <= high:
        raise UserError(f"{flag} {value} is outside the plausible range {low}–{high} µm; "
                        "lengths are in µm (e.g. 0.633 for a 633 nm laser, 0.1 for 100 nm pixels)")
    return float(value)


@overload
def check_wavelength_um(value: float | None, required: Literal[True] = ...) -> float: ...
@overload
def check_wavelength_um(value: float | None, required: bool) -> float | None: ...
def check_wavelength_um(value: float | None, required: bool = True) -> float | None:
    """A wavelength in µm within :data:`WAVELENGTH_RANGE_UM` (``--wavelength-um``)."""
    low, high = WAVELENGTH_RANGE_UM
    return check_length_um(value, "--wavelength-um", low=low, high=high, required=required)


@overload
def check_pixel_size_um(value: float | None, required: Literal[True] = ...) -> float: ...
@overload
def check_pixel_size_um(value: float | None, required: bool) -> float | None: ...
def check_pixel_size_um(value: float | None, required: bool = True) -> float | None:
    """A pixel size in µm within :data:`PIXEL_SIZE_RANGE_UM` (``--pixel-size-um``)."""
    low, high = PIXEL_SIZE_RANGE_UM
    return check_length_um(value, "--pixel-size-um", low=low, high=high, required=required)


def length_unit(pixel_size_um: float | None) -> str:
    """``"µm"`` when the pixel size is known, else ``"px"`` (lengths were measured in pixels)."""
    return "µm" if pixel_size_um else "px"


def length_key(stem: str, pixel_size_um: float | None, power: int = 1) -> str:
    """Column name for a length (``power`` 1) or area (2): ``displacement_median_um`` or ``…_px``."""
    suffix = "um" if pixel_size_um else "px"
    return f"{stem}_{suffix}{power if power > 1 else ''}"
