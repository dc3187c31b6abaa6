"""Where the model's grid lies for an input grid.

The model works on a north-up Lambert azimuthal equal-area (LAEA) grid of 3 km pixels, as SEVIR-LR is. For an
input on a map grid (`io.grid`), `model_grid_for` chooses that grid:

* An input that already is on such a grid (LAEA, pixels 3 km within 0.1 %, evenly spaced) keeps its own
  pixels: the model grid is the input grid, its rows ordered north to south and extended by whole pixels where it
  is smaller than the model's window, so values are copied, not interpolated.
* Any other input gets an LAEA grid whose projection origin is the centre of the input's domain (rounded to
  0.001 degree), on the input's own Earth shape: north is up and pixels are square where the forecaster looks.
  The grid covers the whole of the input's domain (the bounding box of its outer edge in the new projection),
  centred on it, with whole 3 km pixels; it is at least `min_side` pixels a side (the model's window, 128 ×
  128, 384 km), so a smaller input sits in the middle of a larger model grid, and the model grid can be larger
  than the window for a large input (forecast in windows).

An input reaching more than 90 degrees from its centre (LAEA pixels stretched more than 2:1) or needing more than
`MAX_SIDE` model pixels a side is refused.
"""
from __future__ import annotations

import math
import numpy as np

from prediff.errors import InputError

from .grid import MAX_SIDE, CurvilinearGrid, Grid, angle_from, geodetic_of, is_laea, laea_crs, transform

#: the model's pixel, metres, and the side of its window, pixels
MODEL_PIXEL_M = 3000.0
MODEL_SIDE = 128
#: how close to `MODEL_PIXEL_M` (relative) an LAEA input's pixels must be to be used as they are
SAME_PIXEL_RTOL = 1e-3


def _even_axis(axis: np.ndarray, step: float) -> bool:
    diffs = np.diff(axis)
    return bool(np.all(np.abs(diffs - step) <= SAME_PIXEL_RTOL * abs(step)))


def is_model_lattice(grid, pixel_m: float = MODEL_PIXEL_M) -> bool:
    """Whether `grid`'s pixels already are the model's: LAEA, evenly spaced `pixel_m` pixels (within 0.1 %),
    whichever way its axes run (a model grid runs x east, y south: row 0 north)."""
    if not isinstance(grid, Grid) or not is_laea(grid.crs):
        return False
    dx, dy = float(np.mean(np.diff(grid.x))), float(np.mean(np.diff(grid.y)))
    return bool(abs(abs(dx) - pixel_m) <= SAME_PIXEL_RTOL * pixel_m
                and abs(abs(dy) - pixel_m) <= SAME_PIXEL_RTOL * pixel_m and _even_axis(grid.x, dx)
                and _even_axis(grid.y, dy))


def _extend(axis: np.ndarray, side: int) -> np.ndarray:
    """`axis` (evenly spaced) continued by whole steps on both sides to `side` values, centred."""
    n = len(axis)
    if n >= side:
        return axis
    step = (axis[-1] - axis[0]) / (n - 1)
    before = (side - n) // 2
    return axis[0] + step * (np.arange(side) - before)


def model_grid_for(grid, min_side: int = MODEL_SIDE, pixel_m: float = MODEL_PIXEL_M) -> Grid:
    """The model's grid for an input on `grid` (a `Grid` or `CurvilinearGrid`), placed as the module docstring
    says: `grid` itself when it already is one and at least `min_side` pixels a side. Raises InputError (one
    line) when the input's domain cannot be put on one LAEA grid."""
    if is_model_lattice(grid, pixel_m):  # the same pixels, north-up, extended to the model's window
        x, y = _extend(np.sort(grid.x), min_side), _extend(np.sort(grid.y)[::-1], min_side)
        if np.array_equal(x, grid.x) and np.array_equal(y, grid.y):
            return grid
        return Grid(grid.crs, x, y, cf_attrs=grid.cf_attrs)
    lat0, lon0 = grid.centre()
    crs = laea_crs(round(lat0, 3), round(lon0, 3), geodetic_of(grid.crs))
    source = grid.local_crs if isinstance(grid, CurvilinearGrid) else grid.crs
    bx, by = grid.boundary()
    lon, lat = transform(source, geodetic_of(source), bx, by)
    reach = angle_from(lat0, lon0, lat, lon, geodetic_of(source))
    if not reach <= 90.0:
        raise InputError(f"the input's domain reaches {'beyond 90' if math.isinf(reach) else f'{reach:.0f}'} "
                         f"degrees from its centre ({lat0:.2f}, {lon0:.2f}); at most 90 fit one LAEA map; crop it")
    x, y = transform(source, crs, bx, by)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError("the input's domain cannot be projected onto one LAEA map around its centre; crop it")
    x_min, x_max, y_min, y_max = float(x.min()), float(x.max()), float(y.min()), float(y.max())
    # whole pixels covering the domain (a sliver of a pixel below 0.1 % is rounding, not domain)
    width = max(min_side, math.ceil((x_max - x_min) / pixel_m - 1e-3))
    height = max(min_side, math.ceil((y_max - y_min) / pixel_m - 1e-3))
    if max(width, height) > MAX_SIDE:
        raise InputError(f"the input's domain is {(x_max - x_min) / 1e3:.0f} x {(y_max - y_min) / 1e3:.0f} km: "
                         f"{width} x {height} model pixels of {pixel_m / 1e3:g} km; at most {MAX_SIDE} a side; "
                         "crop it")
    cx, cy = (x_min + x_max) / 2.0, (y_min + y_max) / 2.0
    return Grid.from_extent(crs, cx - width * pixel_m / 2.0, cy - height * pixel_m / 2.0,
                            cx + width * pixel_m / 2.0, cy + height * pixel_m / 2.0, height, width)
