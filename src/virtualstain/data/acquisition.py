"""How images were acquired (or simulated): the one :class:`Acquisition` type.

The settings are read from an image file's metadata (``virtualstain simulate`` writes them),
pooled over the training inputs and recorded in a model bundle, and checked again on every
image a model predicts. Their names are spelled here only:

``defocus_um``     defocus z of the plane, µm;
``coherence``      S = NA_condenser / NA_objective;
``binning``        camera binning k (the super-resolution factor of DL-SRQPI pairs);
``noise``          σ of the Gaussian noise (empty field = 1);
``na``             objective numerical aperture;
``wavelength_um``  illumination wavelength, µm.

A pooled setting is one value when every image agrees, else its ``(min, max)`` range.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from ..errors import UserError

#: A setting: one value, or the (min, max) range over several images.
Setting = float | tuple[float, float] | None

#: Relative difference of wavelength (and pixel size) above which a model refuses an image.
TOLERANCE = 0.10


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _setting(value) -> Setting:
    if _number(value):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) for v in value):
        return (value[0], value[1])
    return None


def _span(value: Setting) -> tuple[float, float] | None:
    if value is None:
        return None
    return (value, value) if _number(value) else value  # type: ignore[return-value]


@dataclass(frozen=True)
class Acquisition:
    """Acquisition settings of one image, or pooled over a model's training images (lengths in µm).

    Every field is a value, a ``(min, max)`` range (pooled) or None (not recorded).
    """

    defocus_um: Setting = None
    coherence: Setting = None
    binning: Setting = None
    noise: Setting = None
    na: Setting = None
    wavelength_um: Setting = None

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The setting names, as in file metadata and ``model.json``."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_description(cls, description: Mapping | None) -> Acquisition:
        """The settings an image file's metadata (or a bundle's ``acquisition``) records; others stay None."""
        description = description or {}
        return cls(**{k: _setting(description.get(k)) for k in cls.keys()})

    @classmethod
    def pooled(cls, images: Sequence[Acquisition]) -> Acquisition:
        """Settings shared by all ``images``: the value when all agree, else the ``(min, max)`` range;
        a setting that some image does not record (or records as a range) is left out."""
        out = {}
        for key in cls.keys():
            values = [getattr(a, key) for a in images]
            if not values or not all(_number(v) for v in values):
                continue
            out[key] = values[0] if len(set(values)) == 1 else (min(values), max(values))
        return cls(**out)

    def to_dict(self) -> dict:
        """The recorded settings (ranges as ``[min, max]``), for metadata and ``model.json``."""
        return {k: list(v) if isinstance(v, tuple) else v for k in self.keys() if (v := getattr(self, k)) is not None}

    def missing(self, keys: Sequence[str] | None = None) -> list[str]:
        """Names of the settings (of ``keys``, default all) that are not recorded."""
        return [k for k in (keys or self.keys()) if getattr(self, k) is None]

    def check_image(self, image: Acquisition, source: str) -> None:
        """Check an image's settings against these training settings.

        Another ``binning``, or a ``wavelength_um`` more than :data:`TOLERANCE` off, is refused: a
        super-resolution model learns one binning, and the phase of a defocused intensity depends on λ.
        A ``defocus_um`` or ``coherence`` outside the trained range gives a warning.

        Raises
        ------
        UserError
            With the file name and the fix.
        """
        if _number(image.binning) and _number(self.binning) and image.binning != self.binning:
            raise UserError(f"{source}: the image was binned {image.binning}× but the model was trained on "
                            f"{self.binning}×-binned images; use images binned {self.binning}× or a model trained "
                            f"for {image.binning}×")
        if _number(image.wavelength_um) and _number(self.wavelength_um) \
                and abs(image.wavelength_um / self.wavelength_um - 1) > TOLERANCE:  # type: ignore[operator]
            raise UserError(f"{source}: wavelength {image.wavelength_um:g} µm but the model was trained at "
                            f"{self.wavelength_um:g} µm; the phase of a defocused intensity depends on λ — retrain for "
                            "this wavelength")
        for key, unit in (("defocus_um", " µm"), ("coherence", "")):
            value, span = getattr(image, key), _span(getattr(self, key))
            if _number(value) and span is not None:
                lo, hi = span
                if not lo - 1e-9 <= value <= hi + 1e-9:
                    seen = f"training value {lo:g}{unit}" if lo == hi else f"trained range {lo:g}…{hi:g}{unit}"
                    warnings.warn(f"{source}: {key} {value:g}{unit} is outside the model's {seen}; expect lower "
                                  "accuracy (see the generalisation tables), or train over this range", stacklevel=4)
