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
from typing import Dict, Optional, Tuple

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


def parse_proj(proj: Optional[str]) -> Dict[str, str]:
    """'+proj=laea +lat_0=38 +lon_0=-98 ...' → {'proj': 'laea', 'lat_0': '38', ...} (flags map to '')."""
    out = {}
    for token in str(proj or "").split():
        key, _, value = token.lstrip("+").partition("=")
        if key:
            out[key] = value
    return out


def laea_proj(lat0: float, lon0: float, radius: float) -> str:
    return f"+proj=laea +lat_0={lat0:g} +lon_0={lon0:g} +units=m +a={radius:.1f} +ellps=sphere"


@dataclass(frozen=True)
class Grid:
    """A Lambert azimuthal equal-area image grid on a sphere: the corner coordinates (degrees) of the image's
    outer edges, the projection origin and the sphere's radius (SEVIR's by default)."""

    llcrnrlat: float
    llcrnrlon: float
    urcrnrlat: float
    urcrnrlon: float
    proj: str = SEVIR_PROJ
    lat0: float = LAT_0
    lon0: float = LON_0
    radius: float = EARTH_RADIUS_M

    @classmethod
    def from_corners(cls, corners: Optional[Tuple[float, float, float, float]], proj: Optional[str] = None):
        """Corners (llcrnrlat, llcrnrlon, urcrnrlat, urcrnrlon) of a SEVIR catalog row with its PROJ string."""
        if corners is None:
            return None
        params = parse_proj(proj or SEVIR_PROJ)
        lat0 = float(params.get("lat_0", LAT_0))
        lon0 = float(params.get("lon_0", LON_0))
        radius = float(params.get("a", params.get("R", EARTH_RADIUS_M)))
        return cls(*[float(c) for c in corners], proj=proj or SEVIR_PROJ, lat0=lat0, lon0=lon0, radius=radius)

    @classmethod
    def from_extent(cls, x_min: float, y_min: float, x_max: float, y_max: float, lat0: float = LAT_0,
                    lon0: float = LON_0, radius: float = EARTH_RADIUS_M) -> "Grid":
        """A grid whose outer edges lie at these projected coordinates (metres from the origin)."""
        lat_a, lon_a = laea_inverse(x_min, y_min, lat0, lon0, radius)
        lat_b, lon_b = laea_inverse(x_max, y_max, lat0, lon0, radius)
        return cls(float(lat_a), float(lon_a), float(lat_b), float(lon_b), proj=laea_proj(lat0, lon0, radius),
                   lat0=lat0, lon0=lon0, radius=radius)

    def extent(self) -> Tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) in metres."""
        x0, y0 = laea_forward(self.llcrnrlat, self.llcrnrlon, self.lat0, self.lon0, self.radius)
        x1, y1 = laea_forward(self.urcrnrlat, self.urcrnrlon, self.lat0, self.lon0, self.radius)
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
        return laea_inverse(xx, yy, self.lat0, self.lon0, self.radius)

    @property
    def mapping_name(self) -> str:
        return "lambert_azimuthal_equal_area"

    def mapping_attrs(self) -> Dict[str, object]:
        """The CF grid-mapping attributes (CF-1.8 appendix F)."""
        return {"grid_mapping_name": "lambert_azimuthal_equal_area",
                "latitude_of_projection_origin": float(self.lat0), "longitude_of_projection_origin": float(self.lon0),
                "false_easting": 0.0, "false_northing": 0.0, "earth_radius": float(self.radius),
                "proj4": self.proj}

    def coordinate_attrs(self) -> Tuple[Dict[str, object], Dict[str, object]]:
        """(x attributes, y attributes) of the cell-centre coordinate variables."""
        return ({"standard_name": "projection_x_coordinate", "long_name": "x coordinate of projection",
                 "units": "m", "axis": "X"},
                {"standard_name": "projection_y_coordinate", "long_name": "y coordinate of projection",
                 "units": "m", "axis": "Y"})


@dataclass(frozen=True, eq=False)
class CarriedGrid:
    """A map grid taken over as it is from an input NetCDF (any CF grid mapping): the mapping variable's name and
    attributes, the x (W,) / y (H,) coordinates with their attributes and, when the input has them, 2-D lat / lon
    (H, W) in degrees."""

    mapping_name: str
    attrs: Dict[str, object]
    x: np.ndarray
    y: np.ndarray
    x_attrs: Dict[str, object]
    y_attrs: Dict[str, object]
    lat: Optional[np.ndarray] = None
    lon: Optional[np.ndarray] = None

    def mapping_attrs(self) -> Dict[str, object]:
        return dict(self.attrs)

    def coordinate_attrs(self):
        return dict(self.x_attrs), dict(self.y_attrs)

    def coordinates(self, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
        if (len(self.y), len(self.x)) != (height, width):
            raise ValueError(f"the grid is {len(self.y)}x{len(self.x)}, the fields {height}x{width}")
        return self.x, self.y

    def lat_lon(self, height: int, width: int):
        return None if self.lat is None else (self.lat, self.lon)

    # corner centres, for comparing two grids (a forecast's and its truth's)
    @property
    def llcrnrlat(self) -> float:
        return float(self.lat[-1, 0]) if self.lat is not None else float(self.y.min())

    @property
    def llcrnrlon(self) -> float:
        return float(self.lon[-1, 0]) if self.lon is not None else float(self.x.min())

    @property
    def urcrnrlat(self) -> float:
        return float(self.lat[0, -1]) if self.lat is not None else float(self.y.max())

    @property
    def urcrnrlon(self) -> float:
        return float(self.lon[0, -1]) if self.lon is not None else float(self.x.max())


def box_around(lat: float, lon: float, size_m: float = 384_000.0) -> Grid:
    """A square grid of side `size_m` centred on (lat, lon), as SEVIR patches are."""
    cx, cy = laea_forward(lat, lon)
    half = size_m / 2.0
    lat0, lon0 = laea_inverse(cx - half, cy - half)
    lat1, lon1 = laea_inverse(cx + half, cy + half)
    return Grid(float(lat0), float(lon0), float(lat1), float(lon1))


GRID_SPEC_HELP = ("'center=LAT,LON', 'corner=LAT,LON' (lower-left outer corner) or 'bbox=LAT1,LON1,LAT2,LON2' "
                  "(lower-left and upper-right outer corners), optionally with 'pixel=METRES' (default 3000, not "
                  "with bbox), 'origin=LAT,LON' (LAEA origin, default 38,-98) and 'radius=METRES' (default "
                  "6370997), separated by spaces or ';'")
_SPEC_KEYS = {"center": 2, "corner": 2, "bbox": 4, "pixel": 1, "origin": 2, "radius": 1}


def grid_from_spec(spec: str, height: int, width: int) -> Grid:
    """A Lambert azimuthal equal-area grid for a `height` × `width` image from a `--grid` text (`GRID_SPEC_HELP`):

        grid_from_spec("center=35.2,-97.4", 128, 128)            # SEVIR-LR-like: 3 km pixels around a point
        grid_from_spec("corner=33.5,-99.8 pixel=2000", 128, 128)
        grid_from_spec("bbox=33.5,-99.8,36.9,-95.1", 128, 128)
    """
    from prediff.errors import InputError

    values: Dict[str, Tuple[float, ...]] = {}
    for token in str(spec).replace(";", " ").split():
        key, sep, text = token.partition("=")
        key = key.strip().lower()
        if not sep or key not in _SPEC_KEYS:
            raise InputError(f"--grid {spec!r}: cannot read {token!r}; expected {GRID_SPEC_HELP}")
        try:
            numbers = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise InputError(f"--grid {spec!r}: {key}= needs {_SPEC_KEYS[key]} number(s), got {text!r}") from None
        if len(numbers) != _SPEC_KEYS[key] or not all(np.isfinite(numbers)):
            raise InputError(f"--grid {spec!r}: {key}= needs {_SPEC_KEYS[key]} finite number(s), got {text!r}")
        values[key] = numbers
    placed = [k for k in ("center", "corner", "bbox") if k in values]
    if len(placed) != 1:
        raise InputError(f"--grid {spec!r}: give exactly one of center=, corner=, bbox=; expected {GRID_SPEC_HELP}")
    lat0, lon0 = values.get("origin", (LAT_0, LON_0))
    radius = values.get("radius", (EARTH_RADIUS_M,))[0]
    pixel = values.get("pixel", (3000.0,))[0]
    lats = [v for k in placed for v in values[k][0::2]] + [lat0]
    lons = [v for k in placed for v in values[k][1::2]] + [lon0]
    if not (all(-90 <= v <= 90 for v in lats) and all(-180 <= v <= 360 for v in lons)):
        raise InputError(f"--grid {spec!r}: latitudes must lie in -90..90 and longitudes in -180..360")
    if not (1.0 <= pixel <= 100_000.0) or not (1e6 <= radius <= 1e7):
        raise InputError(f"--grid {spec!r}: pixel= must lie in 1..100000 m and radius= in 1e6..1e7 m")
    if "bbox" in values and "pixel" in values:
        raise InputError(f"--grid {spec!r}: bbox= fixes the pixel size; leave out pixel=")
    if "bbox" in values:
        a, b, c, d = values["bbox"]
        (x_min, x_max), (y_min, y_max) = zip(laea_forward(a, b, lat0, lon0, radius),
                                             laea_forward(c, d, lat0, lon0, radius))
        if not (x_max > x_min and y_max > y_min):
            raise InputError(f"--grid {spec!r}: the second bbox corner must lie north-east of the first")
    else:
        x, y = laea_forward(*values[placed[0]], lat0, lon0, radius)
        if placed[0] == "center":
            x, y = x - pixel * width / 2.0, y - pixel * height / 2.0
        x_min, y_min, x_max, y_max = float(x), float(y), float(x) + pixel * width, float(y) + pixel * height
    if max(abs(x_min), abs(x_max), abs(y_min), abs(y_max)) > 1.9 * radius:
        raise InputError(f"--grid {spec!r}: the grid reaches too far from the projection origin {lat0:g},{lon0:g}; "
                         "set origin= near the grid")
    return Grid.from_extent(x_min, y_min, x_max, y_max, lat0, lon0, radius)


def grid_from_cf(mapping_name: str, attrs: Dict[str, object], x: np.ndarray, y: np.ndarray,
                 x_attrs: Dict[str, object], y_attrs: Dict[str, object], lat: Optional[np.ndarray] = None,
                 lon: Optional[np.ndarray] = None):
    """The grid of a CF file: a `Grid` when it is a regular north-up Lambert azimuthal equal-area grid on a sphere
    in metres (then its corners are recomputed exactly), else a `CarriedGrid` that keeps every value as it is (lat
    and lon are computed for an LAEA grid that lacks them). Raises ValueError on malformed coordinates."""
    if not isinstance(attrs.get("grid_mapping_name"), str):
        raise ValueError(f"the grid mapping variable {mapping_name!r} has no grid_mapping_name")
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 1 or y.ndim != 1 or len(x) < 2 or len(y) < 2:
        raise ValueError("x and y need at least 2 cell centres each")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x or y holds missing values")
    laea = attrs.get("grid_mapping_name") == "lambert_azimuthal_equal_area"
    radius = attrs.get("earth_radius", attrs.get("semi_major_axis") if attrs.get("semi_major_axis") ==
                       attrs.get("semi_minor_axis", attrs.get("semi_major_axis")) else None)
    if laea and radius is None and "semi_major_axis" not in attrs and "inverse_flattening" not in attrs:
        radius = EARTH_RADIUS_M  # CF: without ellipsoid attributes the sphere is not specified; take SEVIR's
    metres = str(x_attrs.get("units", "m")).strip() in ("m", "metre", "meter", "metres", "meters")
    origin = (float(attrs.get("latitude_of_projection_origin", LAT_0)),
              float(attrs.get("longitude_of_projection_origin", LON_0)))
    if laea and radius is not None and metres and not float(attrs.get("false_easting", 0.0)) \
            and not float(attrs.get("false_northing", 0.0)):
        dx, dy = np.diff(x), -np.diff(y)
        if dx[0] > 0 and dy[0] > 0 and np.allclose(dx, dx[0], rtol=1e-6) and np.allclose(dy, dy[0], rtol=1e-6):
            return Grid.from_extent(x[0] - dx[0] / 2, y[-1] - dy[0] / 2, x[-1] + dx[0] / 2, y[0] + dy[0] / 2,
                                    origin[0], origin[1], float(radius))
        if lat is None and metres:
            lat, lon = laea_inverse(*np.meshgrid(x, y), origin[0], origin[1], float(radius))
    if lat is not None:
        lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
        if lat.shape != (len(y), len(x)) or lon.shape != lat.shape:
            raise ValueError(f"lat/lon are {lat.shape}/{lon.shape}; expected ({len(y)}, {len(x)})")
    return CarriedGrid(mapping_name, dict(attrs), x, y, dict(x_attrs), dict(y_attrs), lat, lon)
