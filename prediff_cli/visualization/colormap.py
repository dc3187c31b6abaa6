"""The SEVIR VIL colormap (reference spec §7.1) as a palette: digital VIL (0–255) → colour index → RGB.

Levels 0, 16, 31, 59, 74, 100, 133, 160, 181, 219, 255 bound 10 bins; values below 0 take the "under" colour
(= the first bin's), above 255 the "over" colour (= the last bin's), NaN the "bad" colour (black).
"""
from __future__ import annotations

import numpy as np

LEVELS = (0, 16, 31, 59, 74, 100, 133, 160, 181, 219, 255)
BAD = (0, 0, 0)
COLORS = ((77, 77, 77), (40, 190, 40), (25, 150, 25), (10, 105, 10), (10, 75, 10), (245, 245, 0), (237, 172, 0),
          (240, 110, 0), (160, 0, 0), (231, 0, 255))
#: palette index of the NaN colour; bins are 1..10
BAD_INDEX = 0


def bin_labels():
    return [f"{LEVELS[i]}-{LEVELS[i + 1]}" for i in range(len(COLORS))]


def vil_to_index(vil: np.ndarray) -> np.ndarray:
    """Digital VIL → palette index (uint8): 0 for NaN, 1..10 for the bins (bin i holds [L_i, L_{i+1}))."""
    vil = np.asarray(vil, dtype=np.float64)
    index = np.digitize(vil, LEVELS[1:-1]) + 1  # <16 → 1 (also "under"), ≥219 → 10 (also "over")
    index[np.isnan(vil)] = BAD_INDEX
    return index.astype(np.uint8)


def palette() -> np.ndarray:
    """(11, 3) uint8: the bad colour then the 10 bin colours."""
    return np.array((BAD,) + COLORS, dtype=np.uint8)


def vil_to_rgb(vil: np.ndarray) -> np.ndarray:
    """Digital VIL (...) → RGB uint8 (..., 3)."""
    return palette()[vil_to_index(vil)]
