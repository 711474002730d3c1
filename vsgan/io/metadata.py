"""Physical pixel size: what microscopists rely on, carried from the input to every output.

`PixelSize` holds the Y/X (and optional Z) pixel size in one length unit, named as NGFF axes
want it (UDUNITS names such as ``"micrometer"``). The readers fill it from OME-XML, ImageJ
metadata, TIFF resolution tags or OME-Zarr ``coordinateTransformations``; the writers put it
into OME-TIFF ``PhysicalSize*`` attributes, TIFF resolution tags and NGFF ``scale``.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["PixelSize", "ngff_unit", "ome_unit"]

# Spellings met in OME-XML, ImageJ and NGFF files -> the NGFF (UDUNITS) name.
_UNITS = {
    "micrometer": "micrometer",
    "micrometre": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "um": "micrometer",
    "\u00b5m": "micrometer",  # micro sign
    "\u03bcm": "micrometer",  # greek mu
    "\\u00b5m": "micrometer",  # ImageJ's escaped form
    "nanometer": "nanometer",
    "nanometre": "nanometer",
    "nm": "nanometer",
    "millimeter": "millimeter",
    "millimetre": "millimeter",
    "mm": "millimeter",
    "centimeter": "centimeter",
    "centimetre": "centimeter",
    "cm": "centimeter",
    "meter": "meter",
    "metre": "meter",
    "m": "meter",
    "inch": "inch",
    "in": "inch",
}
# NGFF name -> OME-XML UnitsLength symbol.
_OME = {
    "micrometer": "\u00b5m",
    "nanometer": "nm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
    "inch": "in",
}
# NGFF name -> micrometers, for TIFF resolution tags (stored per centimeter).
_MICROMETERS = {
    "micrometer": 1.0,
    "nanometer": 1e-3,
    "millimeter": 1e3,
    "centimeter": 1e4,
    "meter": 1e6,
    "inch": 25400.0,
}


def ngff_unit(unit: str | None) -> str | None:
    """The NGFF name of a length unit (``"um"``, ``"µm"``, ``"micron"`` -> ``"micrometer"``).

    >>> ngff_unit("\u00b5m"), ngff_unit("micron"), ngff_unit("pixel")
    ('micrometer', 'micrometer', None)
    """
    if unit is None:
        return None
    return _UNITS.get(str(unit).strip().lower())


def ome_unit(unit: str) -> str:
    """The OME-XML symbol of an NGFF length unit (``"micrometer"`` -> ``"µm"``)."""
    return _OME[unit]


@dataclasses.dataclass(frozen=True)
class PixelSize:
    """The physical size of one pixel.

    Attributes:
        y: pixel height in `unit`.
        x: pixel width in `unit`.
        unit: NGFF length unit name (``"micrometer"``, ``"nanometer"``, ...).
        z: plane spacing in `unit`, if known.

    Example:
    >>> PixelSize(0.65, 0.65).micrometers()
    (0.65, 0.65)
    """

    y: float
    x: float
    unit: str = "micrometer"
    z: float | None = None

    def __post_init__(self):
        unit = ngff_unit(self.unit)
        if unit is None:
            raise ValueError(f"unknown length unit {self.unit!r}; use e.g. 'micrometer'.")
        object.__setattr__(self, "unit", unit)
        for name in ("y", "x", "z"):
            value = getattr(self, name)
            if value is None and name == "z":
                continue
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"pixel size {name}={value!r} must be a positive number.")
            # 12 significant digits: TIFF rationals give 0.6499999999999999 for 0.65.
            object.__setattr__(self, name, float(f"{float(value):.12g}"))

    @classmethod
    def parse(cls, y, x, unit, z=None) -> PixelSize | None:
        """A `PixelSize`, or None when the values or the unit are missing or unusable."""
        try:
            return cls(float(y), float(x), unit, None if z is None else float(z))
        except (TypeError, ValueError):
            try:  # a bad Z alone should not lose Y and X
                return cls(float(y), float(x), unit)
            except (TypeError, ValueError):
                return None

    def micrometers(self) -> tuple[float, float]:
        """(y, x) in micrometers."""
        f = _MICROMETERS[self.unit]
        return (self.y * f, self.x * f)
