"""Map grids: where each pixel of a field lies on the Earth, with every projection done by pyproj.

Two kinds of grid describe a field of H rows and W columns:

* `Grid`: a rectilinear grid in a coordinate reference system (CRS): 1-D pixel-centre coordinates `x` (W,) and
  `y` (H,), in metres for a projected CRS (any CF grid mapping: Lambert azimuthal equal-area, polar
  stereographic, Lambert conformal, ...) or in degrees for a geographic one (`latitude_longitude`, rotated pole).
  The axes may run in either direction; the row order of the field is the order of `y`. SEVIR's images, `--grid`
  and the model's own grid are of this kind (Lambert azimuthal equal-area, row 0 north).
* `CurvilinearGrid`: only 2-D latitude and longitude of each pixel centre (H, W), in degrees.

Both give, whatever the projection: `shape`, `lat_lon()` (2-D latitude/longitude of the pixel centres, degrees),
`coordinates()` (the x/y values a NetCDF file writes), `coordinate_attrs()`, `mapping_name` (the CF
`grid_mapping_name`, also the name the forecast file gives its grid-mapping variable) and `mapping_attrs()` (the CF
grid-mapping attributes), `centre()` and `pixel_size_m()`.

Entry points:

* `grid_from_cf(mapping_name, attrs, x, y, x_attrs, y_attrs, lat, lon)`: the grid of a CF file, from its
  grid-mapping attributes (None when the file has none) and its coordinates. Every number is checked (finite,
  within physical ranges) before pyproj sees it; a malformed grid raises ValueError with the reason.
* `grid_from_spec(text, height, width)`: a `--grid` text (`GRID_SPEC_HELP`) → an LAEA `Grid`.
* `Grid.from_corners(corners, proj, height, width)`: a SEVIR catalog row's grid; `box_around` a SEVIR-like patch.
* `laea_crs(lat0, lon0, ...)`: a Lambert azimuthal equal-area CRS that CF can describe.

Where the model's 3 km grid is placed for an input grid is `io.model_grid`; resampling between grids is
`io.regrid`.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError

#: SEVIR's Lambert azimuthal equal-area grid: origin and sphere
LAT_0, LON_0 = 38.0, -98.0
EARTH_RADIUS_M = 6370997.0
SEVIR_PROJ = "+proj=laea +lat_0=38 +lon_0=-98 +units=m +a=6370997.0 +ellps=sphere"
#: the one bound on pixel sizes, for `--grid` and for grids read from files (metres)
PIXEL_RANGE_M = (1.0, 100_000.0)
#: the Earth's semi-axes (or sphere radius) a file may declare, metres; its inverse flattening (0: a sphere)
EARTH_AXIS_RANGE_M = (6.3e6, 6.4e6)
INVERSE_FLATTENING_RANGE = (250.0, 350.0)
#: projected coordinates and false eastings/northings beyond this (metres) are not on the Earth
MAX_COORDINATE_M = 1e8
#: pixels a grid may have along one side
MAX_SIDE = 4096

_LINEAR_UNITS = {"m": 1.0, "metre": 1.0, "meter": 1.0, "metres": 1.0, "meters": 1.0, "km": 1000.0,
                 "kilometre": 1000.0, "kilometer": 1000.0, "kilometres": 1000.0, "kilometers": 1000.0}
_ANGULAR_UNITS = {"degrees", "degree", "degrees_east", "degree_east", "degrees_e", "degreese", "degrees_north",
                  "degree_north", "degrees_n", "degreesn"}
#: names of the labels pyproj writes without meaning ("undefined"): left out of the file
_EMPTY_LABELS = {"unknown", "undefined", ""}


# ------------------------------------------------------------------------------------------------------------------
# CRS and transformations


@functools.lru_cache(maxsize=64)
def _transformer(source: CRS, target: CRS) -> Transformer:
    return Transformer.from_crs(source, target, always_xy=True)


def transform(source: CRS, target: CRS, x, y) -> Tuple[np.ndarray, np.ndarray]:
    """Coordinates (x, y) in `source` → (x, y) in `target` (longitude first for a geographic CRS); points where
    the transformation is undefined come back as inf or NaN, never as an exception or a warning."""
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    if source == target:
        return x.copy(), y.copy()
    # pyproj takes a one-element array for a point (a path NumPy deprecates): always hand it two or more values
    flat_x, flat_y = np.resize(x.ravel(), max(x.size, 2)), np.resize(y.ravel(), max(y.size, 2))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = _transformer(source, target).transform(flat_x, flat_y, errcheck=False)
        except ProjError:
            return np.full(x.shape, np.nan), np.full(y.shape, np.nan)
    return (np.asarray(out[0], np.float64)[:x.size].reshape(x.shape),
            np.asarray(out[1], np.float64)[:y.size].reshape(y.shape))


def laea_crs(lat0: float, lon0: float, geodetic: Optional[CRS] = None, radius: Optional[float] = None) -> CRS:
    """A Lambert azimuthal equal-area CRS with origin (lat0, lon0) in degrees, no false easting/northing, in
    metres, on the Earth shape of `geodetic` (a geographic CRS), else on a sphere of `radius` metres, else on
    SEVIR's sphere. Built from CF attributes, so `CRS.to_cf` describes it back."""
    attrs: Dict[str, object] = {"grid_mapping_name": "lambert_azimuthal_equal_area",
                                "latitude_of_projection_origin": float(lat0),
                                "longitude_of_projection_origin": float(lon0),
                                "false_easting": 0.0, "false_northing": 0.0}
    if geodetic is not None:
        ellipsoid = geodetic.ellipsoid
        attrs["semi_major_axis"] = float(ellipsoid.semi_major_metre)
        attrs["semi_minor_axis"] = float(ellipsoid.semi_minor_metre)
        if ellipsoid.inverse_flattening:
            attrs["inverse_flattening"] = float(ellipsoid.inverse_flattening)
    else:
        attrs["earth_radius"] = float(EARTH_RADIUS_M if radius is None else radius)
    return CRS.from_cf(attrs)


def is_laea(crs: CRS) -> bool:
    """Whether `crs` is a Lambert azimuthal equal-area projection (on a sphere or an ellipsoid)."""
    operation = crs.coordinate_operation
    return bool(crs.is_projected and operation is not None
                and "lambert azimuthal equal area" in operation.method_name.lower())


def _cf_expressible(crs: CRS) -> CRS:
    """`crs` itself, or for PROJ's spherical LAEA (which CF cannot name) the same projection built from CF
    attributes: the numbers are identical, and the forecast file can then describe its grid in CF terms."""
    if "grid_mapping_name" in _to_cf(crs) or not is_laea(crs):
        return crs
    params = {p.name.lower(): p.value for p in crs.coordinate_operation.params}
    lat0 = params.get("latitude of natural origin", params.get("latitude of origin", LAT_0))
    lon0 = params.get("longitude of natural origin", params.get("longitude of origin", LON_0))
    ellipsoid = crs.ellipsoid
    if any(v for k, v in params.items() if k.startswith("false")) or ellipsoid.semi_major_metre != \
            ellipsoid.semi_minor_metre:
        return crs
    return laea_crs(lat0, lon0, radius=ellipsoid.semi_major_metre)


def _to_cf(crs: CRS) -> Dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return crs.to_cf()


# ------------------------------------------------------------------------------------------------------------------
# grids


def _axis_edges(axis: np.ndarray) -> np.ndarray:
    """Pixel edges (n + 1,) of pixel centres (n,): midpoints inside, half a step beyond the ends."""
    mid = (axis[1:] + axis[:-1]) / 2.0
    return np.concatenate([[axis[0] - (axis[1] - axis[0]) / 2.0], mid, [axis[-1] + (axis[-1] - axis[-2]) / 2.0]])


def geodetic_of(crs: CRS) -> CRS:
    """The geographic CRS (true latitude/longitude on the Earth shape) that `crs` is based on."""
    if crs.is_geographic and crs.is_derived:  # a rotated pole: its base
        return crs.source_crs
    return crs.geodetic_crs if crs.geodetic_crs is not None else crs


def _freeze_coordinates(grid, names: Tuple[str, ...]) -> None:
    """Store the fields `names` of the frozen dataclass `grid` as read-only float64 copies: a grid is frozen, so
    neither the caller's arrays nor the grid's own may move its pixels afterwards."""
    for name in names:
        values = np.array(getattr(grid, name), dtype=np.float64)
        values.setflags(write=False)
        object.__setattr__(grid, name, values)


@dataclass(frozen=True, eq=False)
class Grid:
    """A rectilinear map grid: pixel centres `x` (W,) and `y` (H,) in `crs` (metres for a projected CRS, degrees
    for a geographic one), each axis strictly monotonic; `cf_attrs`: the grid-mapping attributes of the file the
    grid was read from, written back as they are when the grid cannot be described by pyproj's own."""

    crs: CRS
    x: np.ndarray
    y: np.ndarray
    cf_attrs: Optional[Dict[str, object]] = None

    def __post_init__(self):
        _freeze_coordinates(self, ("x", "y"))

    # -- construction ----------------------------------------------------------------------------------------------
    @classmethod
    def from_extent(cls, crs: CRS, x_min: float, y_min: float, x_max: float, y_max: float, height: int,
                    width: int) -> "Grid":
        """A north-up grid of `height` × `width` equal pixels whose outer edges lie at these coordinates of `crs`
        (row 0 at `y_max`, column 0 at `x_min`)."""
        dx, dy = (x_max - x_min) / width, (y_max - y_min) / height
        return cls(crs, x_min + dx * (np.arange(width) + 0.5), y_max - dy * (np.arange(height) + 0.5))

    @classmethod
    def from_corners(cls, corners: Optional[Tuple[float, float, float, float]], proj: Optional[str] = None,
                     height: int = 128, width: int = 128) -> Optional["Grid"]:
        """The grid of a SEVIR catalog row: the latitude/longitude (degrees) of the image's lower-left and
        upper-right outer corners (llcrnrlat, llcrnrlon, urcrnrlat, urcrnrlon) and its PROJ string; row 0 north."""
        if corners is None:
            return None
        try:
            crs = _cf_expressible(CRS(proj or SEVIR_PROJ))
        except CRSError as exc:
            raise ValueError(f"cannot read the PROJ string {proj!r} ({exc})") from None
        lat_a, lon_a, lat_b, lon_b = (float(c) for c in corners)
        (x0, x1), (y0, y1) = transform(geodetic_of(crs), crs, [lon_a, lon_b], [lat_a, lat_b])
        if not (np.all(np.isfinite([x0, x1, y0, y1])) and x1 > x0 and y1 > y0):
            raise ValueError(f"the corners {tuple(corners)} do not span a grid in {proj!r}")
        grid = cls.from_extent(crs, x0, y0, x1, y1, height, width)
        _check_pixels(grid, "the catalog's grid")
        return grid

    # -- description -----------------------------------------------------------------------------------------------
    @property
    def shape(self) -> Tuple[int, int]:
        return len(self.y), len(self.x)

    @property
    def geographic(self) -> bool:
        """Whether x/y are angles (longitude/latitude, or rotated ones) rather than metres."""
        return bool(self.crs.is_geographic)

    def _check_shape(self, height: Optional[int], width: Optional[int]) -> None:
        if height is not None and (height, width) != self.shape:
            raise ValueError(f"the grid is {self.shape[0]}x{self.shape[1]}, the fields {height}x{width}")

    def coordinates(self, height: Optional[int] = None, width: Optional[int] = None):
        """(x (W,), y (H,)): the pixel centres in the CRS's units (`height`/`width`, when given, must match)."""
        self._check_shape(height, width)
        return self.x, self.y

    def lat_lon(self, height: Optional[int] = None, width: Optional[int] = None):
        """(latitude, longitude) of the pixel centres, (H, W) each, degrees (longitudes in -180..180)."""
        self._check_shape(height, width)
        xx, yy = np.meshgrid(self.x, self.y)
        lon, lat = transform(self.crs, geodetic_of(self.crs), xx, yy)
        return lat, lon

    def edges(self) -> Tuple[np.ndarray, np.ndarray]:
        """(x edges (W + 1,), y edges (H + 1,)) of the pixels, in the order of the axes."""
        return _axis_edges(self.x), _axis_edges(self.y)

    def extent(self) -> Tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max): the outer edges of the grid in the CRS's units."""
        xe, ye = self.edges()
        return float(xe.min()), float(ye.min()), float(xe.max()), float(ye.max())

    def boundary(self) -> Tuple[np.ndarray, np.ndarray]:
        """(x, y) of points along the grid's outer edge (every pixel edge), in the CRS's units."""
        xe, ye = self.edges()
        x = np.concatenate([xe, np.full(len(ye), xe[-1]), xe[::-1], np.full(len(ye), xe[0])])
        y = np.concatenate([np.full(len(xe), ye[0]), ye, np.full(len(xe), ye[-1]), ye[::-1]])
        return x, y

    def centre(self) -> Tuple[float, float]:
        """(latitude, longitude) in degrees of the middle of the grid."""
        x0, y0, x1, y1 = self.extent()
        lon, lat = transform(self.crs, geodetic_of(self.crs), [(x0 + x1) / 2.0], [(y0 + y1) / 2.0])
        return float(lat[0]), float(lon[0])

    def pixel_size_m(self) -> Tuple[float, float]:
        """(smallest, largest) pixel side in metres over the grid (for a geographic grid, along the parallels at
        its poleward and equatorward edges)."""
        dx, dy = np.abs(np.diff(self.x)), np.abs(np.diff(self.y))
        if not self.geographic:
            unit = self.crs.axis_info[0].unit_conversion_factor if self.crs.axis_info else 1.0
            sides = np.concatenate([dx, dy]) * unit
            return float(sides.min()), float(sides.max())
        metres = math.radians(1.0) * geodetic_of(self.crs).ellipsoid.semi_major_metre
        lat, _ = _lat_lon_at(self, _sample_indices(len(self.y)), _sample_indices(len(self.x)))
        cos = np.cos(np.radians(np.clip(np.abs(lat), 0.0, 89.0)))
        smallest = min(dy.min() * metres, dx.min() * metres * float(cos.min()))
        largest = max(dy.max() * metres, dx.max() * metres * float(cos.max()))
        return float(smallest), float(largest)

    @property
    def mapping_name(self) -> str:
        """The CF grid_mapping_name (e.g. "lambert_azimuthal_equal_area", "polar_stereographic")."""
        return str(self.mapping_attrs().get("grid_mapping_name", "crs"))

    def mapping_attrs(self) -> Dict[str, object]:
        """The CF grid-mapping attributes of the grid (CF-1.8 appendix F), with `crs_wkt`."""
        return _mapping_attrs(self.crs, self.cf_attrs)

    def coordinate_attrs(self) -> Tuple[Dict[str, object], Dict[str, object]]:
        """(x attributes, y attributes) of the pixel-centre coordinate variables."""
        if self.geographic and _is_plain_lat_lon(self.crs):
            return ({"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"},
                    {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"})
        if self.geographic:
            return ({"standard_name": "grid_longitude", "long_name": "longitude in the rotated grid",
                     "units": "degrees", "axis": "X"},
                    {"standard_name": "grid_latitude", "long_name": "latitude in the rotated grid",
                     "units": "degrees", "axis": "Y"})
        return ({"standard_name": "projection_x_coordinate", "long_name": "x coordinate of projection",
                 "units": "m", "axis": "X"},
                {"standard_name": "projection_y_coordinate", "long_name": "y coordinate of projection",
                 "units": "m", "axis": "Y"})

    def same_as(self, other, tolerance_m: float = 1.0) -> bool:
        """Whether `other` has the same pixels: same shape, pixel centres within `tolerance_m` metres."""
        return same_pixels(self, other, tolerance_m)

    # the outer corners in degrees (lower-left = west-south edges), for messages and the SEVIR catalog
    def _corner(self, which: int) -> Tuple[float, float]:
        x0, y0, x1, y1 = self.extent()
        x, y = ((x0, y0), (x1, y1))[which]
        lon, lat = transform(self.crs, geodetic_of(self.crs), [x], [y])
        return float(lat[0]), float(lon[0])

    # the SEVIR catalog's corner columns
    llcrnrlat = property(lambda self: self._corner(0)[0])
    llcrnrlon = property(lambda self: self._corner(0)[1])
    urcrnrlat = property(lambda self: self._corner(1)[0])
    urcrnrlon = property(lambda self: self._corner(1)[1])


@dataclass(frozen=True, eq=False)
class CurvilinearGrid:
    """A grid known only by the latitude `lat` and longitude `lon` (H, W), degrees, of each pixel centre, on the
    Earth shape of the geographic CRS `crs` (WGS 84 unless the file's grid mapping says otherwise)."""

    lat: np.ndarray
    lon: np.ndarray
    crs: CRS

    def __post_init__(self):
        _freeze_coordinates(self, ("lat", "lon"))

    @property
    def shape(self) -> Tuple[int, int]:
        return tuple(int(n) for n in self.lat.shape)

    geographic = False  # x/y are pixel indices

    def coordinates(self, height: Optional[int] = None, width: Optional[int] = None):
        """(column indices (W,), row indices (H,)): the grid has no projection coordinates."""
        if height is not None and (height, width) != self.shape:
            raise ValueError(f"the grid is {self.shape[0]}x{self.shape[1]}, the fields {height}x{width}")
        return np.arange(self.shape[1], dtype=np.float64), np.arange(self.shape[0], dtype=np.float64)

    def lat_lon(self, height: Optional[int] = None, width: Optional[int] = None):
        if height is not None and (height, width) != self.shape:
            raise ValueError(f"the grid is {self.shape[0]}x{self.shape[1]}, the fields {height}x{width}")
        return self.lat, self.lon

    def coordinate_attrs(self):
        return ({"long_name": "column index (the map position is in lat/lon)", "units": "1", "axis": "X"},
                {"long_name": "row index (the map position is in lat/lon)", "units": "1", "axis": "Y"})

    @property
    def mapping_name(self) -> str:
        return "latitude_longitude"

    def mapping_attrs(self) -> Dict[str, object]:
        return _mapping_attrs(self.crs, None)

    def centre(self) -> Tuple[float, float]:
        h, w = self.shape
        return float(self.lat[h // 2, w // 2]), float(self.lon[h // 2, w // 2])

    @functools.cached_property
    def local_crs(self) -> CRS:
        """An LAEA CRS centred on the grid, on its Earth shape: where its pixel positions are compared."""
        lat, lon = self.centre()
        return laea_crs(lat, lon, self.crs)

    @functools.cached_property
    def local_xy(self) -> Tuple[np.ndarray, np.ndarray]:
        """(x, y) of the pixel centres in `local_crs`, metres, (H, W) each."""
        return transform(self.crs, self.local_crs, self.lon, self.lat)

    def pixel_size_m(self) -> Tuple[float, float]:
        x, y = self.local_xy
        sides = np.concatenate([np.hypot(np.diff(x, axis=0), np.diff(y, axis=0)).ravel(),
                                np.hypot(np.diff(x, axis=1), np.diff(y, axis=1)).ravel()])
        return float(np.percentile(sides, 1)), float(np.percentile(sides, 99))

    def boundary(self) -> Tuple[np.ndarray, np.ndarray]:
        """(x, y) in `local_crs` of points along the grid's outer edge (half a pixel beyond the outer centres)."""
        x, y = self.local_xy
        sides = []
        for a in (x, y):
            # half a pixel beyond the first/last row and column
            rows = [1.5 * a[0] - 0.5 * a[1], 1.5 * a[-1] - 0.5 * a[-2]]
            cols = [1.5 * a[:, 0] - 0.5 * a[:, 1], 1.5 * a[:, -1] - 0.5 * a[:, -2]]
            sides.append(np.concatenate([rows[0], cols[1], rows[1], cols[0]]))
        return sides[0], sides[1]

    def same_as(self, other, tolerance_m: float = 1.0) -> bool:
        """Whether `other` has the same pixels: same shape, pixel centres within `tolerance_m` metres."""
        return same_pixels(self, other, tolerance_m)

    @property
    def llcrnrlat(self) -> float:
        return float(self.lat[-1, 0])

    @property
    def llcrnrlon(self) -> float:
        return float(self.lon[-1, 0])

    @property
    def urcrnrlat(self) -> float:
        return float(self.lat[0, -1])

    @property
    def urcrnrlon(self) -> float:
        return float(self.lon[0, -1])


def _sample_indices(n: int, count: int = 256) -> np.ndarray:
    """About `count` evenly spread indices of 0..n-1, the first and last included."""
    return np.unique(np.r_[np.arange(0, n, max(1, n // count)), n - 1])


def _lat_lon_at(grid, rows: np.ndarray, cols: np.ndarray):
    if isinstance(grid, Grid):
        xx, yy = np.meshgrid(grid.x[cols], grid.y[rows])
        lon, lat = transform(grid.crs, geodetic_of(grid.crs), xx, yy)
        return lat, lon
    lat, lon = grid.lat_lon()
    return lat[np.ix_(rows, cols)], lon[np.ix_(rows, cols)]


def same_pixels(a, b, tolerance_m: float = 1.0) -> bool:
    """Whether grids `a` and `b` (of either kind) have the same shape and pixel centres within `tolerance_m`
    metres (compared on about 256 × 256 pixels spread over the grid, the outer rows and columns included)."""
    if a is b:
        return True
    if not (hasattr(b, "lat_lon") and hasattr(b, "shape")) or a.shape != b.shape:
        return False
    rows, cols = _sample_indices(a.shape[0]), _sample_indices(a.shape[1])
    (lat_a, lon_a), (lat_b, lon_b) = (_lat_lon_at(g, rows, cols) for g in (a, b))
    metres = math.radians(1.0) * 6.4e6
    dlon = (lon_a - lon_b + 180.0) % 360.0 - 180.0
    apart = np.hypot((lat_a - lat_b) * metres, dlon * metres * np.cos(np.radians(lat_a)))
    return bool(np.all(np.isfinite(apart)) and apart.max() <= tolerance_m)


def _is_plain_lat_lon(crs: CRS) -> bool:
    return bool(crs.is_geographic and not crs.is_derived)


def _mapping_attrs(crs: CRS, cf_attrs: Optional[Dict[str, object]]) -> Dict[str, object]:
    attrs = {k: v for k, v in _to_cf(crs).items() if not (isinstance(v, str) and v.lower() in _EMPTY_LABELS)}
    if "grid_mapping_name" not in attrs and cf_attrs is not None:  # pyproj cannot name it in CF: the file's own
        return dict(cf_attrs, crs_wkt=attrs.get("crs_wkt", ""))
    if attrs.get("semi_major_axis") is not None and attrs.get("semi_major_axis") == attrs.get("semi_minor_axis"):
        radius = attrs.pop("semi_major_axis")  # a sphere: CF's earth_radius says so in one attribute
        attrs.pop("semi_minor_axis")
        attrs.pop("inverse_flattening", None)
        attrs["earth_radius"] = radius
    return attrs


def box_around(lat: float, lon: float, size_m: float = 384_000.0, pixel_m: float = 3000.0) -> Grid:
    """A north-up square grid of side `size_m` centred on (lat, lon) in SEVIR's projection, as SEVIR patches are."""
    crs = laea_crs(LAT_0, LON_0)
    (cx,), (cy,) = transform(geodetic_of(crs), crs, [lon], [lat])
    n = int(round(size_m / pixel_m))
    half = size_m / 2.0
    return Grid.from_extent(crs, cx - half, cy - half, cx + half, cy + half, n, n)


# ------------------------------------------------------------------------------------------------------------------
# numbers from outside


def _finite_number(value, what: str) -> float:
    try:
        number = float(np.asarray(value, dtype=np.float64).reshape(-1)[0]) if np.size(value) == 1 else None
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number):
        raise ValueError(f"{what} is {value!r}; expected a finite number")
    return number


def _check_range(value: float, low: float, high: float, what: str, unit: str = "") -> None:
    if not low <= value <= high:
        raise ValueError(f"{what} is {value:g}{unit}; expected {low:g}..{high:g}{unit}")


#: CF grid-mapping attributes holding numbers: name → (low, high, unit) of their physical range
_ANGLE_LAT = (-90.0, 90.0, " degrees")
_ANGLE_LON = (-360.0, 360.0, " degrees")
_CF_NUMBERS = {
    "latitude_of_projection_origin": _ANGLE_LAT, "standard_parallel": _ANGLE_LAT,
    "grid_north_pole_latitude": _ANGLE_LAT, "longitude_of_projection_origin": _ANGLE_LON,
    "longitude_of_central_meridian": _ANGLE_LON, "straight_vertical_longitude_from_pole": _ANGLE_LON,
    "longitude_of_prime_meridian": _ANGLE_LON, "grid_north_pole_longitude": _ANGLE_LON,
    "north_pole_grid_longitude": _ANGLE_LON, "azimuth_of_central_line": _ANGLE_LON,
    "false_easting": (-MAX_COORDINATE_M, MAX_COORDINATE_M, " m"),
    "false_northing": (-MAX_COORDINATE_M, MAX_COORDINATE_M, " m"),
    "scale_factor_at_projection_origin": (0.5, 2.0, ""), "scale_factor_at_central_meridian": (0.5, 2.0, ""),
    "earth_radius": EARTH_AXIS_RANGE_M + (" m",), "semi_major_axis": EARTH_AXIS_RANGE_M + (" m",),
    "semi_minor_axis": EARTH_AXIS_RANGE_M + (" m",), "perspective_point_height": (1.0, 1e9, " m"),
}
#: attributes pyproj reads that are strings
_CF_TEXT = {"grid_mapping_name", "crs_wkt", "spatial_ref", "reference_ellipsoid_name", "prime_meridian_name",
            "horizontal_datum_name", "geographic_crs_name", "projected_crs_name", "sweep_angle_axis",
            "fixed_angle_axis", "geoid_name", "geopotential_datum_name", "towgs84"}


def crs_from_cf(attrs: Dict[str, object], name: str = "crs") -> CRS:
    """The CRS of a CF grid-mapping variable's attributes, every number checked first (finite, within the physical
    range of what it is); `crs_wkt` and other free-form strings are ignored, the CF numbers define the grid.
    Without Earth-shape attributes pyproj takes WGS 84. Raises ValueError."""
    mapping = attrs.get("grid_mapping_name")
    if not isinstance(mapping, str) or not mapping.strip():
        raise ValueError(f"the grid mapping variable {name!r} has no grid_mapping_name")
    clean: Dict[str, object] = {"grid_mapping_name": mapping.strip()}
    for key, value in attrs.items():
        if key in _CF_TEXT or key.startswith("_"):
            continue
        values = np.asarray(value).reshape(-1)
        if values.dtype.kind not in "iuf" or not 1 <= values.size <= 2:
            continue  # not a CF grid-mapping number (descriptions, comments): pyproj does not read it
        numbers = [_finite_number(v, f"{name}:{key}") for v in values]
        if key in _CF_NUMBERS:
            low, high, unit = _CF_NUMBERS[key]
            for v in numbers:
                _check_range(v, low, high, f"{name}:{key}", unit)
        if key == "inverse_flattening" and numbers[0] != 0.0:
            _check_range(numbers[0], *INVERSE_FLATTENING_RANGE, f"{name}:{key}")
        clean[key] = numbers[0] if len(numbers) == 1 else numbers
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            crs = CRS.from_cf(clean)
    except (CRSError, ProjError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"pyproj cannot build the grid mapping {mapping!r} ({str(exc).splitlines()[0]})") \
            from None
    ellipsoid = geodetic_of(crs).ellipsoid
    for what, axis in (("semi-major axis", ellipsoid.semi_major_metre), ("semi-minor axis",
                                                                         ellipsoid.semi_minor_metre)):
        _check_range(float(axis), *EARTH_AXIS_RANGE_M, f"the Earth's {what} of {name!r}", " m")
    return crs


def _axis_kind(attrs: Dict[str, object], axis: str) -> Tuple[str, float]:
    """('linear', metres per unit) or ('angular', 1) or ('index', 1) for a coordinate variable's attributes."""
    units = attrs.get("units")
    text = units.strip().lower().replace(" ", "") if isinstance(units, str) else None
    std = attrs.get("standard_name")
    if text in _LINEAR_UNITS:
        return "linear", _LINEAR_UNITS[text]
    if text in _ANGULAR_UNITS:
        return "angular", 1.0
    if std in ("projection_x_coordinate", "projection_y_coordinate"):
        raise ValueError(f"{axis} has units {units!r}; expected metres ('m' or 'km')")
    if std in ("longitude", "latitude", "grid_longitude", "grid_latitude"):
        raise ValueError(f"{axis} has units {units!r}; expected degrees")
    return "index", 1.0


def _check_axis(values, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind not in "iuf":
        raise ValueError(f"{name} holds {values.dtype} values; expected numbers")
    values = values.astype(np.float64)
    if values.ndim != 1 or not 2 <= len(values) <= MAX_SIDE:
        raise ValueError(f"{name} has shape {values.shape}; expected 2..{MAX_SIDE} pixel centres along one axis")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} holds missing or non-finite values")
    steps = np.diff(values)
    if not (np.all(steps > 0) or np.all(steps < 0)):
        raise ValueError(f"{name} is not strictly increasing or decreasing")
    return values


def _check_pixels(grid, what: str) -> None:
    """The grid on the Earth (coordinates within bounds), its pixels within `PIXEL_RANGE_M`, and its projection
    defined at every pixel centre and edge."""
    low, high = PIXEL_RANGE_M
    plain = isinstance(grid, Grid) and grid.geographic and _is_plain_lat_lon(grid.crs)
    if isinstance(grid, Grid):
        x_min, y_min, x_max, y_max = grid.extent()
        reach = max(abs(x_min), abs(x_max), abs(y_min), abs(y_max))
        if not grid.geographic and reach > MAX_COORDINATE_M:
            raise ValueError(f"{what} reaches {reach:g} m from its origin; the Earth is within {MAX_COORDINATE_M:g} m")
        if plain and (min(y_min, y_max) < -90.5 or max(y_min, y_max) > 90.5 or x_max - x_min > 360.0 + 1e-6):
            raise ValueError(f"{what} spans latitudes {y_min:g}..{y_max:g} and {x_max - x_min:g} degrees of "
                             "longitude; expected -90..90 and at most 360")
    smallest, largest = grid.pixel_size_m()
    if not (math.isfinite(smallest) and math.isfinite(largest)) or smallest < low or largest > high:
        raise ValueError(f"{what} has pixels of {smallest:.3g}..{largest:.3g} m; expected {low:g}..{high:g} m")
    if isinstance(grid, Grid):
        lat, _ = _lat_lon_at(grid, _sample_indices(grid.shape[0]), _sample_indices(grid.shape[1]))
        bx, by = grid.boundary()
        edge_lon, edge_lat = transform(grid.crs, geodetic_of(grid.crs), bx, by)
        if plain:
            edge_lat = np.clip(edge_lat, -90.0, 90.0)  # half a pixel beyond a pole-touching row
        if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(edge_lat)) and np.all(np.isfinite(edge_lon))):
            raise ValueError(f"{what} lies partly where its projection is undefined (no latitude/longitude there)")


def grid_from_cf(mapping_name: Optional[str], attrs: Optional[Dict[str, object]], x, y,
                 x_attrs: Optional[Dict[str, object]] = None, y_attrs: Optional[Dict[str, object]] = None,
                 lat=None, lon=None):
    """The grid of a CF file from what it declares; raises ValueError (with the reason) when it is malformed.

    Parameters
    ----------
    mapping_name, attrs : the grid-mapping variable's name and attributes, or None when the field names none.
    x, y : the 1-D coordinate variables along the field's last (x, W) and second-to-last (y, H) axes, in the
        field's row/column order, or None when the file has none; `x_attrs`, `y_attrs` their attributes (units
        "m"/"km" for projection coordinates, degrees for longitude/latitude).
    lat, lon : 2-D latitude and longitude (H, W) in degrees, or None.

    Returns
    -------
    `Grid` when x/y are projection coordinates of the grid mapping, or longitude/latitude (with a
    `latitude_longitude` or rotated-pole mapping, or none: WGS 84); else `CurvilinearGrid` when 2-D lat/lon are
    given. A grid mapping with x/y takes precedence over 2-D lat/lon, which are then not used.
    """
    attrs = dict(attrs or {})
    x_attrs, y_attrs = dict(x_attrs or {}), dict(y_attrs or {})
    crs = crs_from_cf(attrs, str(mapping_name)) if attrs else None
    have_axes = x is not None and y is not None
    kinds = (_axis_kind(x_attrs, "x"), _axis_kind(y_attrs, "y")) if have_axes else None
    if have_axes and kinds[0][0] == kinds[1][0] != "index":
        kind = kinds[0][0]
        xs, ys = _check_axis(x, "x") * kinds[0][1], _check_axis(y, "y") * kinds[1][1]
        if kind == "linear":
            if crs is None:
                raise ValueError("x and y are projection coordinates, but no grid mapping names the projection")
            if not crs.is_projected:
                raise ValueError(f"x and y are in metres, but the grid mapping {mapping_name!r} is "
                                 f"{_to_cf(crs).get('grid_mapping_name', 'not a projection')}")
        else:
            for axis, axis_attrs, wrong in (("x", x_attrs, "latitude"), ("y", y_attrs, "longitude")):
                units = str(axis_attrs.get("units", "")).strip().lower()
                if axis_attrs.get("standard_name") == wrong or units.endswith("north" if wrong == "latitude"
                                                                               else "east"):
                    raise ValueError(f"{axis} holds {wrong}s; expected x along longitude and y along latitude")
            crs = crs if crs is not None else CRS.from_cf({"grid_mapping_name": "latitude_longitude"})
            if not crs.is_geographic:
                raise ValueError(f"x and y are in degrees, but the grid mapping {mapping_name!r} is a projection")
        grid = Grid(crs, xs, ys, cf_attrs=attrs or None)
    elif lat is not None and lon is not None:
        lat, lon = np.asarray(lat), np.asarray(lon)
        if lat.dtype.kind not in "iuf" or lon.dtype.kind not in "iuf":
            raise ValueError("lat/lon are not numbers")
        lat, lon = lat.astype(np.float64), lon.astype(np.float64)
        if lat.ndim != 2 or lon.shape != lat.shape or min(lat.shape) < 2 or max(lat.shape) > MAX_SIDE:
            raise ValueError(f"lat/lon are {lat.shape}/{lon.shape}; expected the same (H, W) with 2..{MAX_SIDE} "
                             "pixels a side")
        if have_axes and (len(np.ravel(y)), len(np.ravel(x))) != lat.shape:
            raise ValueError(f"lat/lon are {lat.shape}; expected ({len(np.ravel(y))}, {len(np.ravel(x))})")
        if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
            raise ValueError("lat or lon holds missing or non-finite values")
        if np.abs(lat).max() > 90.0 or np.abs(lon).max() > 360.0:
            raise ValueError("lat/lon lie outside -90..90 / -360..360 degrees")
        geodetic = geodetic_of(crs) if crs is not None else CRS.from_cf({"grid_mapping_name": "latitude_longitude"})
        grid = CurvilinearGrid(lat, (lon + 180.0) % 360.0 - 180.0, geodetic)
    elif have_axes and crs is not None:
        raise ValueError(f"x/y have units {x_attrs.get('units')!r}/{y_attrs.get('units')!r}; expected metres for a "
                         "projection or degrees for latitude/longitude")
    else:
        raise ValueError("no map coordinates: neither projection x/y, nor longitude/latitude, nor 2-D lat/lon")
    _check_pixels(grid, "the grid")
    return grid


# ------------------------------------------------------------------------------------------------------------------
# --grid


GRID_SPEC_HELP = ("'center=LAT,LON', 'corner=LAT,LON' (lower-left outer corner) or 'bbox=LAT1,LON1,LAT2,LON2' "
                  "(lower-left and upper-right outer corners), optionally with 'pixel=METRES' (default 3000, not "
                  "with bbox), 'origin=LAT,LON' (LAEA origin, default the grid's centre) and 'radius=METRES' "
                  "(sphere, default 6370997), separated by spaces or ';'")
_SPEC_KEYS = {"center": 2, "corner": 2, "bbox": 4, "pixel": 1, "origin": 2, "radius": 1}


def _spec_values(spec: str) -> Dict[str, Tuple[float, ...]]:
    from prediff.errors import InputError

    values: Dict[str, Tuple[float, ...]] = {}
    for token in str(spec).replace(";", " ").split():
        key, sep, text = token.partition("=")
        key = key.strip().lower()
        if not sep or key not in _SPEC_KEYS:
            raise InputError(f"--grid {spec!r}: cannot read {token!r}; expected {GRID_SPEC_HELP}")
        if key in values:
            raise InputError(f"--grid {spec!r}: {key}= is given twice; give it once")
        try:
            numbers = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise InputError(f"--grid {spec!r}: {key}= needs {_SPEC_KEYS[key]} number(s), got {text!r}") from None
        if len(numbers) != _SPEC_KEYS[key] or not all(np.isfinite(numbers)):
            raise InputError(f"--grid {spec!r}: {key}= needs {_SPEC_KEYS[key]} finite number(s), got {text!r}")
        values[key] = numbers
    return values


def grid_from_spec(spec: str, height: int, width: int) -> Grid:
    """A north-up Lambert azimuthal equal-area grid (on a sphere) for a `height` × `width` image from a `--grid`
    text (`GRID_SPEC_HELP`); the projection's origin is the grid's centre unless `origin=` says otherwise:

        grid_from_spec("center=35.2,-97.4", 128, 128)            # 3 km pixels around a point
        grid_from_spec("corner=33.5,-99.8 pixel=2000", 128, 128)
        grid_from_spec("bbox=33.5,-99.8,36.9,-95.1", 128, 128)

    Raises InputError (one line) for anything that does not describe a grid on the Earth: unknown or repeated
    keys, latitudes beyond ±90, pixels outside `PIXEL_RANGE_M` (given or implied by bbox=), a radius that is not
    the Earth's, or a grid reaching more than 90 degrees from the origin (where LAEA degenerates; its antipode is
    undefined).
    """
    from prediff.errors import InputError

    values = _spec_values(spec)
    placed = [k for k in ("center", "corner", "bbox") if k in values]
    if len(placed) != 1:
        raise InputError(f"--grid {spec!r}: give exactly one of center=, corner=, bbox=; expected {GRID_SPEC_HELP}")
    place = placed[0]
    radius = values.get("radius", (EARTH_RADIUS_M,))[0]
    pixel = values.get("pixel", (3000.0,))[0]
    lats = list(values[place][0::2]) + list(values.get("origin", ())[0::2])
    lons = list(values[place][1::2]) + list(values.get("origin", ())[1::2])
    if not (all(-90 <= v <= 90 for v in lats) and all(-180 <= v <= 360 for v in lons)):
        raise InputError(f"--grid {spec!r}: latitudes must lie in -90..90 and longitudes in -180..360")
    low, high = PIXEL_RANGE_M
    if not low <= pixel <= high:
        raise InputError(f"--grid {spec!r}: pixel= must lie in {low:g}..{high:g} m")
    if not EARTH_AXIS_RANGE_M[0] <= radius <= EARTH_AXIS_RANGE_M[1]:
        raise InputError(f"--grid {spec!r}: radius= must lie in {EARTH_AXIS_RANGE_M[0]:g}..{EARTH_AXIS_RANGE_M[1]:g} "
                         "m (the Earth's)")
    if place == "bbox" and "pixel" in values:
        raise InputError(f"--grid {spec!r}: bbox= fixes the pixel size; leave out pixel=")
    if "origin" in values:
        origin = values["origin"]
    elif place == "bbox":
        a, b, c, d = values["bbox"]
        origin = ((a + c) / 2.0, (b + d) / 2.0)
    else:
        origin = values[place]
    crs = laea_crs(origin[0], origin[1], radius=radius)
    geodetic = geodetic_of(crs)
    given = angle_from(origin[0], origin[1], values[place][0::2], values[place][1::2], geodetic)
    if not given <= 90.0:
        raise InputError(f"--grid {spec!r}: {place}= lies {given:.0f} degrees from the projection origin "
                         f"{origin[0]:g},{origin[1]:g}; at most 90 (LAEA degenerates beyond, its antipode is "
                         "undefined); set origin= near the grid or leave it out")
    if place == "bbox":
        a, b, c, d = values["bbox"]
        (x_min, x_max), (y_min, y_max) = transform(geodetic, crs, [b, d], [a, c])
        if not np.all(np.isfinite([x_min, x_max, y_min, y_max])):
            raise InputError(f"--grid {spec!r}: a bbox corner is where the projection from origin "
                             f"{origin[0]:g},{origin[1]:g} is undefined (its antipode); set origin= near the grid")
        if not (x_max > x_min and y_max > y_min):
            raise InputError(f"--grid {spec!r}: the second bbox corner must lie north-east of the first")
        implied = min((x_max - x_min) / width, (y_max - y_min) / height), \
            max((x_max - x_min) / width, (y_max - y_min) / height)
        if implied[0] < low or implied[1] > high:
            raise InputError(f"--grid {spec!r}: the bbox makes pixels of {implied[0]:.3g}..{implied[1]:.3g} m for "
                             f"{height}x{width} pixels; pixels must lie in {low:g}..{high:g} m")
    else:
        (x,), (y,) = transform(geodetic, crs, [values[place][1]], [values[place][0]])
        if not (np.isfinite(x) and np.isfinite(y)):
            raise InputError(f"--grid {spec!r}: {place}= is where the projection from origin "
                             f"{origin[0]:g},{origin[1]:g} is undefined (its antipode); set origin= near the grid")
        if place == "center":
            x, y = x - pixel * width / 2.0, y - pixel * height / 2.0
        elif "origin" not in values:
            # corner= alone: the origin moves to the grid's centre, the corner stays where it was given
            (lon_c,), (lat_c,) = transform(crs, geodetic, [x + pixel * width / 2.0], [y + pixel * height / 2.0])
            origin = (lat_c, lon_c)
            crs = laea_crs(lat_c, lon_c, radius=radius)
            (x,), (y,) = transform(geodetic, crs, [values[place][1]], [values[place][0]])
        x_min, y_min, x_max, y_max = float(x), float(y), float(x) + pixel * width, float(y) + pixel * height
    grid = Grid.from_extent(crs, x_min, y_min, x_max, y_max, height, width)
    reach = reach_degrees(grid)
    if not reach <= 90.0:
        where = "beyond 90" if math.isinf(reach) else f"{reach:.0f}"
        if "origin" in values:
            raise InputError(f"--grid {spec!r}: the grid reaches {where} degrees from the projection origin "
                             f"{origin[0]:g},{origin[1]:g}; at most 90 (beyond it LAEA pixels are stretched more "
                             "than 2:1); set origin= nearer the grid's centre")
        raise InputError(f"--grid {spec!r}: the grid reaches {where} degrees from its centre; at most 90 fit one "
                         "LAEA map (beyond it pixels are stretched more than 2:1); use fewer or smaller pixels")
    return grid


def angle_from(lat0: float, lon0: float, lat, lon, geodetic: CRS) -> float:
    """The largest angle (degrees: geodesic distance over the semi-major axis) from (lat0, lon0) to the points
    (lat, lon), on the Earth shape of `geodetic`; inf when a point is not finite."""
    lat, lon = np.ravel(np.asarray(lat, np.float64)), np.ravel(np.asarray(lon, np.float64))
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        return math.inf
    geod = geodetic.get_geod()
    n = max(lat.size, 2)  # two or more values: pyproj takes one for a point
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, dist = geod.inv(np.full(n, lon0), np.full(n, lat0), np.resize(lon, n),
                              np.resize(np.clip(lat, -90.0, 90.0), n))
    return float(np.degrees(np.max(dist) / geod.a))


def reach_degrees(grid: Grid) -> float:
    """The largest angle (degrees) from the projection origin of an LAEA grid to its outer edge (inf where the
    projection is undefined)."""
    params = {p.name.lower(): p.value for p in grid.crs.coordinate_operation.params}
    lat0 = params.get("latitude of natural origin", 0.0)
    lon0 = params.get("longitude of natural origin", 0.0)
    bx, by = grid.boundary()
    lon, lat = transform(grid.crs, geodetic_of(grid.crs), bx, by)
    return angle_from(lat0, lon0, lat, lon, geodetic_of(grid.crs))
