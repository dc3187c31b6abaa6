"""Resampling fields from one map grid onto another (`io.grid`): an input onto the model's grid, a forecast back.

One method for every pair of grids, coarsening or refining: each target pixel is the mean of k × k points spread
evenly over it (the centres of a k × k split of the pixel), each point read from the source field by bilinear
interpolation between the four source pixel centres around it (within the outermost half pixel of the source,
the nearest pixel's value). k is the ratio of the target's largest pixel side to the source's smallest, rounded
up, at most 16:

* coarsening (source pixels smaller than the target's): every source pixel inside a target pixel is sampled,
  in proportion to the area it covers: an area-weighted mean, so a storm core is averaged into the coarser pixel,
  never skipped between samples;
* refining (k = 1): bilinear interpolation at the target pixel's centre.

Missing values stay missing: a target pixel whose points touch a missing (NaN) source pixel is NaN. Points beyond
the source's outer edge do not count: a target pixel partly outside the source's domain is the mean over its part
inside, and `coverage` (0..1, the fraction of its points inside) says how much was inside; a pixel wholly
outside is NaN with coverage 0.

Source grids: `Grid` (any CRS; positions found by inverting its 1-D axes) or `CurvilinearGrid` (positions found
by Newton's method on its pixel centres, seeded by the nearest centre). Target grids: `Grid` or
`CurvilinearGrid`. Work is done in slabs of target rows, so memory stays bounded whatever the grids' sizes.
"""
from __future__ import annotations

import math
from typing import Callable, Tuple

import numpy as np

from .grid import CurvilinearGrid, Grid, transform

#: the most points per target pixel along one side
MAX_SUPERSAMPLING = 16
#: points (target pixels × k²) and values (points × fields) handled at once
_POINTS_PER_SLAB = 1 << 20
_VALUES_PER_SLAB = 1 << 23
#: fractional indices this close to a whole number are that number (a pixel centre read exactly)
_SNAP = 1e-6


def supersampling(source, target) -> int:
    """k: points per target pixel side (see the module docstring)."""
    smallest_source = source.pixel_size_m()[0]
    largest_target = target.pixel_size_m()[1]
    ratio = largest_target / smallest_source
    if not math.isfinite(ratio):
        return MAX_SUPERSAMPLING
    return int(min(MAX_SUPERSAMPLING, max(1, math.ceil(ratio - 1e-6))))


def resample(fields, source, target) -> Tuple[np.ndarray, np.ndarray]:
    """`fields` (..., H_s, W_s) on `source` → (values (..., H_t, W_t) float32 on `target`, coverage (H_t, W_t)
    float32 in 0..1), by the method of the module docstring. Values are NaN where the target pixel touches missing
    source values or lies wholly outside the source's domain (coverage 0)."""
    fields = np.asarray(fields, dtype=np.float32)
    hs, ws = source.shape
    if fields.shape[-2:] != (hs, ws):
        raise ValueError(f"the fields are {fields.shape[-2:]}, the source grid {hs}x{ws}")
    lead = fields.shape[:-2]
    flat = fields.reshape((-1, hs, ws))
    ht, wt = target.shape
    if source.same_as(target, tolerance_m=1e-3):
        return fields.copy(), np.ones((ht, wt), np.float32)
    k = supersampling(source, target)
    offsets = (np.arange(k) + 0.5) / k - 0.5
    locate = _locator(source)
    position = _positioner(target, source)
    sampler = _Sampler(flat)
    out = np.empty((len(flat), ht, wt), np.float32)
    coverage = np.empty((ht, wt), np.float32)
    rows = max(1, min(_POINTS_PER_SLAB, _VALUES_PER_SLAB // max(len(flat), 1)) // (wt * k * k))
    cols = (np.arange(wt)[None, :, None, None] + offsets[None, None, None, :])
    for r0 in range(0, ht, rows):
        r1 = min(ht, r0 + rows)
        rr = np.arange(r0, r1)[:, None, None, None] + offsets[None, None, :, None]
        rr, cc = np.broadcast_arrays(rr, cols)  # (R, W, k, k): row and column of each point, target indices
        px, py = position(rr.ravel(), cc.ravel())
        rs, cs = locate(px, py)
        inside = (np.isfinite(rs) & np.isfinite(cs) & (rs >= -0.5 - _SNAP) & (rs <= hs - 0.5 + _SNAP)
                  & (cs >= -0.5 - _SNAP) & (cs <= ws - 0.5 + _SNAP))
        values = sampler(np.where(inside, rs, 0.0), np.where(inside, cs, 0.0))  # (N, P)
        inside = inside.reshape((r1 - r0, wt, k * k))
        values = values.reshape((len(flat), r1 - r0, wt, k * k))
        count = inside.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, r0:r1] = np.where(inside[None], values, 0.0).sum(axis=-1) / count[None]
        coverage[r0:r1] = count / float(k * k)
    return out.reshape(lead + (ht, wt)), coverage


# ------------------------------------------------------------------------------------------------------------------
# where target points lie in the source's space


def _axis_at(axis: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Coordinates at fractional indices along a 1-D axis (linear between centres, continued beyond the ends)."""
    n = len(axis)
    i0 = np.clip(np.floor(index), 0, n - 2).astype(np.int64)
    t = index - i0
    return axis[i0] + t * (axis[i0 + 1] - axis[i0])


def _index_of(axis: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Fractional indices of coordinates along a strictly monotonic 1-D axis (continued linearly beyond the ends)."""
    n = len(axis)
    if axis[0] > axis[-1]:
        return (n - 1) - _index_of(axis[::-1], values)
    with np.errstate(invalid="ignore"):
        i0 = np.clip(np.searchsorted(axis, values, side="right") - 1, 0, n - 2)
        return i0 + (values - axis[i0]) / (axis[i0 + 1] - axis[i0])


def _bilinear_nodes(nodes: np.ndarray, r: np.ndarray, c: np.ndarray):
    """Bilinear interpolation (continued beyond the border cells) of a 2-D array of node values at fractional
    (r, c), with the derivatives along r and c."""
    h, w = nodes.shape
    r0 = np.clip(np.floor(r), 0, h - 2).astype(np.int64)
    c0 = np.clip(np.floor(c), 0, w - 2).astype(np.int64)
    tr, tc = r - r0, c - c0
    a, b = nodes[r0, c0], nodes[r0, c0 + 1]
    d, e = nodes[r0 + 1, c0], nodes[r0 + 1, c0 + 1]
    value = a * (1 - tr) * (1 - tc) + b * (1 - tr) * tc + d * tr * (1 - tc) + e * tr * tc
    return value, (d - a) * (1 - tc) + (e - b) * tc, (b - a) * (1 - tr) + (e - d) * tr


def _space(source):
    """The CRS in which `source`'s positions are found."""
    return source.local_crs if isinstance(source, CurvilinearGrid) else source.crs


def _positioner(target, source) -> Callable:
    """(fractional target row, column) → (x, y) in the source's space."""
    space = _space(source)
    wrap = isinstance(source, Grid) and source.geographic
    centre = float((source.x[0] + source.x[-1]) / 2.0) if wrap else 0.0

    def unwrap(x, y):
        if wrap:  # longitudes onto the source's own 360 degrees (a grid may run 0..360 or across 180)
            x = centre + (x - centre + 180.0) % 360.0 - 180.0
        return x, y

    if isinstance(target, Grid):
        def position(r, c):
            return unwrap(*transform(target.crs, space, _axis_at(target.x, c), _axis_at(target.y, r)))
        return position
    nx, ny = transform(target.crs, space, target.lon, target.lat)

    def position_curvilinear(r, c):
        return unwrap(_bilinear_nodes(nx, r, c)[0], _bilinear_nodes(ny, r, c)[0])
    return position_curvilinear


def _locator(source) -> Callable:
    """(x, y) in the source's space → fractional (row, column) of the source; NaN where not found."""
    if isinstance(source, Grid):
        def locate(x, y):
            return _index_of(source.y, y), _index_of(source.x, x)
        return locate
    return _CurvilinearLocator(source)


class _CurvilinearLocator:
    """Fractional indices in a curvilinear grid: the nearest pixel centre, then Newton's method on the bilinear
    interpolation of the centres' positions."""

    ITERATIONS = 8

    def __init__(self, grid: CurvilinearGrid):
        from scipy.spatial import cKDTree

        self.x, self.y = grid.local_xy
        self.width = grid.shape[1]
        self.size = grid.pixel_size_m()[1]
        self.tree = cKDTree(np.column_stack([self.x.ravel(), self.y.ravel()]))

    def __call__(self, px: np.ndarray, py: np.ndarray):
        r = np.full(px.shape, np.nan)
        c = np.full(px.shape, np.nan)
        ok = np.isfinite(px) & np.isfinite(py)
        _, idx = self.tree.query(np.column_stack([px[ok], py[ok]]), distance_upper_bound=4.0 * self.size)
        found = idx < self.x.size
        where = np.flatnonzero(ok)[found]
        qx, qy = px[where], py[where]
        rr, cc = (idx[found] // self.width).astype(np.float64), (idx[found] % self.width).astype(np.float64)
        with np.errstate(all="ignore"):
            for _ in range(self.ITERATIONS):
                x, xr, xc = _bilinear_nodes(self.x, rr, cc)
                y, yr, yc = _bilinear_nodes(self.y, rr, cc)
                det = xr * yc - xc * yr
                dr = (yc * (qx - x) - xc * (qy - y)) / det
                dc = (-yr * (qx - x) + xr * (qy - y)) / det
                rr = rr + np.clip(np.nan_to_num(dr), -2.0, 2.0)
                cc = cc + np.clip(np.nan_to_num(dc), -2.0, 2.0)
            x, y = _bilinear_nodes(self.x, rr, cc)[0], _bilinear_nodes(self.y, rr, cc)[0]
            converged = np.hypot(x - qx, y - qy) <= 1e-3 * self.size
        r[where[converged]], c[where[converged]] = rr[converged], cc[converged]
        return r, c


# ------------------------------------------------------------------------------------------------------------------
# reading the source at fractional indices


class _Sampler:
    """Bilinear reads of N fields (N, H, W) at fractional (row, column) inside [-0.5, n - 0.5], missing-aware."""

    def __init__(self, flat: np.ndarray):
        self.h, self.w = flat.shape[1:]
        missing = np.isnan(flat)
        if missing.any():  # read as 0, and where any weight falls on a missing value the result is missing
            self.missing = missing.reshape(len(flat), -1).view(np.uint8)
            self.values = np.where(missing, np.float32(0.0), flat).reshape(len(flat), -1)
        else:
            self.missing, self.values = None, flat.reshape(len(flat), -1)

    def _weights(self, index: np.ndarray, n: int):
        index = np.clip(index, 0.0, n - 1)  # the outer half pixel reads the border pixel
        near = np.round(index)
        index = np.where(np.abs(index - near) < _SNAP, near, index)
        i0 = np.clip(np.floor(index), 0, max(n - 2, 0)).astype(np.int64)
        t = (index - i0).astype(np.float32) if n > 1 else np.zeros(index.shape, np.float32)
        return i0, np.minimum(i0 + 1, n - 1), t

    def _read(self, table, r0, r1, c0, c1, tr, tc):
        return ((table[:, r0 * self.w + c0] * (1 - tc) + table[:, r0 * self.w + c1] * tc) * (1 - tr)
                + (table[:, r1 * self.w + c0] * (1 - tc) + table[:, r1 * self.w + c1] * tc) * tr)

    def __call__(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        r0, r1, tr = self._weights(r, self.h)
        c0, c1, tc = self._weights(c, self.w)
        values = self._read(self.values, r0, r1, c0, c1, tr, tc)
        if self.missing is not None:
            values[self._read(self.missing, r0, r1, c0, c1, tr, tc) > 0] = np.nan
        return values
