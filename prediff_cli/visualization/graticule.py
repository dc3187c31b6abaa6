"""Latitude/longitude lines over the pictures, when the input's grid is known.

No map is downloaded: the lines are the pixels where the latitude (or longitude) of the cell centres crosses a
multiple of the line spacing, drawn in grey over every panel, and their values are written along the edges of
the first panel. The spacing is the first of 0.25°, 0.5°, 1°, 2°, 5°, 10° that gives at most 4 lines across the
image's span.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

SPACINGS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
MAX_LINES = 4


@dataclass(frozen=True)
class Graticule:
    """lines: (H, W) bool, the pixels on a line; labels: (row, column, text) where a line meets the image's left
    edge (latitudes) or bottom edge (longitudes); spacing in degrees."""

    lines: np.ndarray
    labels: List[Tuple[int, int, str]]
    spacing: float


def grid_lat_lon(grid, shape) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(latitude, longitude) of the cell centres, each (H, W) in degrees, from the input's grid object (None:
    no grid). The one place the pictures ask a grid for coordinates."""
    if grid is None:
        return None
    lat, lon = grid.lat_lon(*shape)
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    if lat.shape != tuple(shape) or lon.shape != tuple(shape) or not (np.isfinite(lat).all() and
                                                                     np.isfinite(lon).all()):
        return None
    return lat, lon


def _spacing(values: np.ndarray) -> float:
    span = float(values.max() - values.min())
    return next((s for s in SPACINGS if span / s <= MAX_LINES), SPACINGS[-1])


def _crossings(values: np.ndarray, spacing: float, axis: int) -> np.ndarray:
    """Pixels whose cell lies just past a multiple of `spacing` from its neighbour along `axis` (0: the one
    above, for the latitudes, which change down the image; 1: the one to the left, for the longitudes): lines one
    pixel wide."""
    band = np.floor(values / spacing)
    out = np.zeros(values.shape, bool)
    if axis == 0:
        out[1:, :] = band[1:, :] != band[:-1, :]
    else:
        out[:, 1:] = band[:, 1:] != band[:, :-1]
    return out


def _degrees(value: float, positive: str, negative: str) -> str:
    return f"{abs(value):g}°{positive if value >= 0 else negative}"


def graticule(lat: np.ndarray, lon: np.ndarray) -> Graticule:
    """The lines and edge labels for cell-centre coordinates lat, lon (H, W) in degrees."""
    spacing = min(_spacing(lat), _spacing(lon))
    lines = _crossings(lat, spacing, 0) | _crossings(lon, spacing, 1)
    labels = []
    height, width = lat.shape
    left, bottom = np.floor(lat[:, 0] / spacing), np.floor(lon[-1, :] / spacing)
    for row in np.flatnonzero(left[1:] != left[:-1]) + 1:
        value = max(left[row], left[row - 1]) * spacing
        labels.append((int(row), 0, _degrees(value, "N", "S")))
    for col in np.flatnonzero(bottom[1:] != bottom[:-1]) + 1:
        if col > width - width // 8:  # no room for the text before the right edge
            continue
        value = max(bottom[col], bottom[col - 1]) * spacing
        labels.append((lat.shape[0] - 1, int(col), _degrees(value, "E", "W")))
    return Graticule(lines, labels, spacing)


def graticule_of(grid, shape) -> Optional[Graticule]:
    """The graticule of an image of `shape` (H, W) on `grid` (None when the grid is unknown)."""
    coords = grid_lat_lon(grid, shape)
    return None if coords is None else graticule(*coords)
