"""Which dimension of a CF variable is time, which is y (north–south) and which is x (west–east): read from the
metadata, never from the dimensions' order.

A dimension is recognised by its coordinate variable (the variable of the same name), in this order of trust:
its `axis` attribute (T, Y, X); its `standard_name` (time; projection_y_coordinate, latitude, grid_latitude;
projection_x_coordinate, longitude, grid_longitude); its units ("<unit> since <date>" is time, degrees_north /
degrees_east are latitude / longitude). A dimension without a coordinate variable is recognised by the usual names
(time or t; y, lat or latitude; x, lon or longitude). Dimensions of length 1 that are none of these (a single
height level, a single ensemble member) are dropped. Anything else — two dimensions claiming the same role, a
coordinate claiming two, a dimension nothing identifies — is refused in one line that says which attributes
would identify it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

from prediff.errors import InputError

_AXIS = {"T": "time", "Y": "y", "X": "x"}
_STANDARD_NAMES = {"time": "time", "projection_y_coordinate": "y", "latitude": "y", "grid_latitude": "y",
                   "projection_x_coordinate": "x", "longitude": "x", "grid_longitude": "x"}
_UNITS = {"degrees_north": "y", "degree_north": "y", "degrees_n": "y", "degree_n": "y",
          "degrees_east": "x", "degree_east": "x", "degrees_e": "x", "degree_e": "x"}
_DIMENSION_NAMES = {"time": "time", "t": "time", "y": "y", "lat": "y", "latitude": "y", "x": "x", "lon": "x",
                    "longitude": "x"}
HOW = ("give each dimension a coordinate variable with axis='T'/'Y'/'X' or a standard_name (time, "
       "projection_y_coordinate or latitude, projection_x_coordinate or longitude)")


def _roles_of(attrs: Mapping[str, object], is_time_typed: bool) -> set:
    roles = set()
    axis = attrs.get("axis")
    if isinstance(axis, str) and axis.strip().upper() in _AXIS:
        roles.add(_AXIS[axis.strip().upper()])
    std = attrs.get("standard_name")
    if isinstance(std, str) and std.strip() in _STANDARD_NAMES:
        roles.add(_STANDARD_NAMES[std.strip()])
    units = attrs.get("units")
    if isinstance(units, str):
        text = units.strip().lower()
        if " since " in f" {text} ":
            roles.add("time")
        elif text.replace(" ", "") in _UNITS:
            roles.add(_UNITS[text.replace(" ", "")])
    if is_time_typed:
        roles.add("time")
    return roles


@dataclass(frozen=True)
class Axes:
    """The dimension names of a variable's time (None when it has none), y and x, and the length-1 dimensions
    that are none of these."""

    time: Optional[str]
    y: str
    x: str
    dropped: Tuple[str, ...] = ()


def identify_axes(name: str, dims: Tuple[str, ...], sizes: Mapping[str, int],
                  coordinates: Mapping[str, Tuple[Mapping[str, object], bool]], what: str,
                  need_time: bool = True) -> Axes:
    """The roles of the dimensions `dims` of variable `name`.

    Parameters
    ----------
    dims : tuple of str
        The variable's dimensions, in the file's order.
    sizes : mapping
        Dimension name → length.
    coordinates : mapping
        Dimension name → (attributes of its coordinate variable, whether its values are already decoded times),
        for the dimensions that have a coordinate variable.
    what : str
        Where the variable is, for messages.
    need_time : bool
        Whether a time dimension is required (a single-time file may carry its time as a scalar coordinate).
    """
    found: Dict[str, str] = {}
    unknown, dropped = [], []
    for dim in dims:
        if dim in coordinates:
            attrs, typed = coordinates[dim]
            roles = _roles_of(attrs, typed)
            if not roles and attrs.get("axis") is None and attrs.get("standard_name") is None:
                roles = {_DIMENSION_NAMES[dim.lower()]} if dim.lower() in _DIMENSION_NAMES else set()
        else:
            roles = {_DIMENSION_NAMES[dim.lower()]} if dim.lower() in _DIMENSION_NAMES else set()
        if len(roles) > 1:
            raise InputError(f"{name!r} in {what}: the coordinate {dim!r} claims to be {' and '.join(sorted(roles))}; "
                             "its axis, standard_name and units disagree")
        if not roles:
            (dropped if sizes.get(dim) == 1 else unknown).append(dim)
            continue
        role = roles.pop()
        if role in found:
            raise InputError(f"{name!r} in {what}: both {found[role]!r} and {dim!r} are its {role} dimension; "
                             f"{HOW}")
        found[role] = dim
    if unknown:
        raise InputError(f"{name!r} in {what} has dimensions {tuple(dims)}: cannot tell what {unknown[0]!r} is; "
                         f"{HOW}")
    missing = [r for r in (("time", "y", "x") if need_time else ("y", "x")) if r not in found]
    if missing:
        raise InputError(f"{name!r} in {what} has dimensions {tuple(dims)}, none of which is its "
                         f"{' or '.join(missing)} dimension; {HOW}")
    return Axes(time=found.get("time"), y=found["y"], x=found["x"], dropped=tuple(dropped))
