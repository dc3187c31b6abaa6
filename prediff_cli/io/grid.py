"""SEVIR's image grid: Lambert azimuthal equal-area on a sphere (conventions.md, "SEVIR grid").

SEVIR's catalog gives each event's PROJ string (`+proj=laea +lat_0=38 +lon_0=-98 +units=m +a=6370997.0
+ellps=sphere`) and the latitude/longitude of the image's lower-left and upper-right corners. Projecting the
corners gives the extent in metres; pixels are equal squares inside it (3 km for SEVIR-LR's 128 × 128).
Row 0 of a SEVIR image is its *northern* edge (raster order, as the official plots draw it with imshow's default
upper origin), so y decreases with the row index.

The projection formulas are Snyder's (USGS Professional Paper 1395, eqs. 24-2, 24-3, 20-18, 24-16, 5-3b) for
the sphere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

EARTH_RADIUS_M = 6370997.0
LAT_0, LON_0 = 38.0, -98.0
SEVIR_PROJ = "+proj=laea +lat_0=38 +lon_0=-98 +units=m +a=6370997.0 +ellps=sphere"


def laea_forward(lat, lon, lat0: float = LAT_0, lon0: float = LON_0, radius: float = EARTH_RADIUS_M):
    """Degrees → metres (x east, y north) relative to the projection origin."""
    phi = np.radians(lat)
    phi1, dlam = np.radians(lat0), np.radians(lon) - np.radians(lon0)
    k = np.sqrt(2.0 / (1.0 + np.sin(phi1) * np.sin(phi) + np.cos(phi1) * np.cos(phi) * np.cos(dlam)))
    x = radius * k * np.cos(phi) * np.sin(dlam)
    y = radius * k * (np.cos(phi1) * np.sin(phi) - np.sin(phi1) * np.cos(phi) * np.cos(dlam))
    return x, y


def laea_inverse(x, y, lat0: float = LAT_0, lon0: float = LON_0, radius: float = EARTH_RADIUS_M):
    """Metres → degrees (lat, lon); the inverse of `laea_forward`."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    phi1 = np.radians(lat0)
    rho = np.hypot(x, y)
    c = 2.0 * np.arcsin(np.clip(rho / (2.0 * radius), -1.0, 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(rho > 0, y * np.sin(c) / np.where(rho > 0, rho, 1.0), 0.0)
    phi = np.arcsin(np.clip(np.cos(c) * np.sin(phi1) + ratio * np.cos(phi1), -1.0, 1.0))
    lam = np.radians(lon0) + np.arctan2(x * np.sin(c), rho * np.cos(phi1) * np.cos(c) - y * np.sin(phi1) * np.sin(c))
    return np.degrees(phi), (np.degrees(lam) + 180.0) % 360.0 - 180.0


@dataclass(frozen=True)
class Grid:
    """An image grid: corner coordinates (degrees) and the PROJ string they refer to."""

    llcrnrlat: float
    llcrnrlon: float
    urcrnrlat: float
    urcrnrlon: float
    proj: str = SEVIR_PROJ

    @classmethod
    def from_corners(cls, corners: Optional[Tuple[float, float, float, float]], proj: Optional[str] = None):
        if corners is None:
            return None
        return cls(*[float(c) for c in corners], proj=proj or SEVIR_PROJ)

    def extent(self) -> Tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) in metres."""
        x0, y0 = laea_forward(self.llcrnrlat, self.llcrnrlon)
        x1, y1 = laea_forward(self.urcrnrlat, self.urcrnrlon)
        return float(x0), float(y0), float(x1), float(y1)

    def coordinates(self, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
        """Cell-centre x (width,) increasing eastward and y (height,) decreasing southward (row 0 = north)."""
        x0, y0, x1, y1 = self.extent()
        dx, dy = (x1 - x0) / width, (y1 - y0) / height
        x = x0 + dx * (np.arange(width) + 0.5)
        y = y1 - dy * (np.arange(height) + 0.5)
        return x, y

    def lat_lon(self, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
        """2-D latitude and longitude of the cell centres, (height, width) each."""
        x, y = self.coordinates(height, width)
        xx, yy = np.meshgrid(x, y)
        return laea_inverse(xx, yy)


def box_around(lat: float, lon: float, size_m: float = 384_000.0) -> Grid:
    """A square grid of side `size_m` centred on (lat, lon), as SEVIR patches are."""
    cx, cy = laea_forward(lat, lon)
    half = size_m / 2.0
    lat0, lon0 = laea_inverse(cx - half, cy - half)
    lat1, lon1 = laea_inverse(cx + half, cy + half)
    return Grid(float(lat0), float(lon0), float(lat1), float(lon1))
