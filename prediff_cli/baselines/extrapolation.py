"""Semi-Lagrangian advection of a field along a steady motion field (backward scheme, bilinear interpolation).

For lead k the value at pixel x is the last observed field at the departure point of the trajectory that ends at
x, found by stepping backwards k times along the motion field:

    d_0 = x,   d_{j+1} = d_j − v(d_j),   forecast_k(x) = field(d_k)

with v sampled bilinearly at the (off-grid) departure points. This follows curved trajectories of a steady,
non-uniform flow (a single jump x − k·v(x) would not), conserves no mass on purpose and applies no growth or
decay (pure Lagrangian persistence). Departure points outside the frame get `fill` (0: no rain is assumed to
enter from outside, as nothing is known there).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def semi_lagrangian(field: np.ndarray, motion: np.ndarray, n_steps: int, *, fill: float = 0.0) -> np.ndarray:
    """Advect field (H, W) with motion (2, H, W) = (dy, dx) in pixels per step for 1..n_steps steps.

    Returns (n_steps, H, W) float32; values stay within [min(field, fill), max(field, fill)] (bilinear
    interpolation is a convex combination)."""
    field = np.asarray(field, np.float64)
    motion = np.asarray(motion, np.float64)
    h, w = field.shape
    grid = np.stack(np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij"))
    departure = grid.copy()
    out = np.empty((n_steps, h, w), np.float32)
    for k in range(n_steps):
        step = np.stack([ndimage.map_coordinates(motion[c], departure, order=1, mode="nearest") for c in (0, 1)])
        departure -= step
        out[k] = ndimage.map_coordinates(field, departure, order=1, mode="constant", cval=fill)
    return out
