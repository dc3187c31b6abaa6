"""Which way a file's rows and columns run, and turning its fields north-up / east-right for the model and back.

The model was trained on SEVIR images: row 0 is the northern edge, column 0 the western one. A CF file says
which way its axes run through its coordinate values: a y (or latitude) coordinate that increases with the row
index puts the south first, an x (or longitude) coordinate that decreases with the column index puts the east
first. Coordinates without a unit of length or angle (pixel indices, or none) say nothing, and the rows are taken
as they come. The flips are their own inverse: `apply` turns input-order fields into model order and back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np

from prediff.errors import InputError

#: units that make a coordinate a position (so its direction tells the orientation); compared without spaces
LENGTH_UNITS = {"m", "metre", "meter", "metres", "meters", "km", "kilometre", "kilometer", "kilometres", "kilometers"}
ANGLE_UNITS = {"degrees_north", "degree_north", "degrees_n", "degree_n", "degreesn", "degreen", "degrees_east",
               "degree_east", "degrees_e", "degree_e", "degreese", "degreee", "degrees", "degree"}
POSITION_NAMES = {"projection_x_coordinate", "projection_y_coordinate", "latitude", "longitude", "grid_latitude",
                  "grid_longitude"}


def is_position(attrs: Mapping[str, object]) -> bool:
    """Whether a coordinate with these attributes holds map positions (not pixel indices)."""
    units = str(attrs.get("units", "")).replace(" ", "").lower()
    return attrs.get("standard_name") in POSITION_NAMES or units in LENGTH_UNITS or units in ANGLE_UNITS


def _direction(values, attrs: Mapping[str, object], what: str) -> int:
    """+1 increasing, -1 decreasing, 0 when the coordinate says nothing about direction."""
    if values is None or not is_position(attrs):
        return 0
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 2:
        return 0
    if not np.all(np.isfinite(v)):
        raise InputError(f"{what} holds missing or non-finite values")
    step = np.diff(v)
    if np.all(step > 0):
        return 1
    if np.all(step < 0):
        return -1
    raise InputError(f"{what} is not monotonic; expected cell centres that increase or decrease steadily")


@dataclass(frozen=True)
class Orientation:
    """How the file's (y, x) order differs from the model's: `flip_y` when its first row is the southern one,
    `flip_x` when its first column is the eastern one."""

    flip_y: bool = False
    flip_x: bool = False

    @classmethod
    def of(cls, x=None, x_attrs: Optional[Mapping] = None, y=None, y_attrs: Optional[Mapping] = None,
           what: str = "the input") -> "Orientation":
        """From 1-D x and y coordinate values (and their attributes) in the file's order."""
        dx = _direction(x, x_attrs or {}, f"the x coordinate of {what}")
        dy = _direction(y, y_attrs or {}, f"the y coordinate of {what}")
        return cls(flip_y=dy > 0, flip_x=dx < 0)

    @property
    def identity(self) -> bool:
        return not (self.flip_y or self.flip_x)

    def apply(self, array):
        """Flip the last two axes (y, x) of `array` as needed; the same call maps model order back to file order."""
        if array is None or self.identity:
            return array
        out = np.asarray(array)
        if self.flip_y:
            out = out[..., ::-1, :]
        if self.flip_x:
            out = out[..., ::-1]
        return np.ascontiguousarray(out)

    def apply_x(self, x):
        """The 1-D x coordinate in the other order."""
        return x if x is None or not self.flip_x else np.ascontiguousarray(np.asarray(x)[::-1])

    def apply_y(self, y):
        """The 1-D y coordinate in the other order."""
        return y if y is None or not self.flip_y else np.ascontiguousarray(np.asarray(y)[::-1])

    def describe(self) -> str:
        parts = (["rows run south to north"] if self.flip_y else []) + \
            (["columns run east to west"] if self.flip_x else [])
        return " and ".join(parts) or "north-up, east-right"
