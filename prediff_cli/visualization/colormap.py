"""The SEVIR VIL colormap (`sevir_cmap.py`) as a palette: digital VIL (0–255) → colour index → RGB, and the
probability palette of the exceedance panels.

Levels 0, 16, 31, 59, 74, 100, 133, 160, 181, 219, 255 bound 10 bins (the official levels); values below 0 take
the "under" colour (= the first bin's), above 255 the "over" colour (= the last bin's), NaN the "bad" colour.
Two colours differ from the official table, for legibility (docs/formats.md): the no-echo bin [0, 16) is drawn
in a light grey close to the light background (officially (77, 77, 77)), and [74, 100) is a darker green
(0, 50, 0) (officially (10, 75, 10), hard to tell from [59, 74)'s (10, 105, 10)): the four greens now step down in
lightness by 13–21 CIELAB L* units each.
"""
from __future__ import annotations

import numpy as np

from prediff.vil_scale import digital_to_kg_m2

LEVELS = (0, 16, 31, 59, 74, 100, 133, 160, 181, 219, 255)
BAD = (0, 0, 0)
OFFICIAL_COLORS = ((77, 77, 77), (40, 190, 40), (25, 150, 25), (10, 105, 10), (10, 75, 10), (245, 245, 0),
                   (237, 172, 0), (240, 110, 0), (160, 0, 0), (231, 0, 255))
NO_ECHO = (236, 236, 236)
COLORS = (NO_ECHO,) + OFFICIAL_COLORS[1:4] + ((0, 50, 0),) + OFFICIAL_COLORS[5:]
#: palette index of the NaN colour; bins are 1..10
BAD_INDEX = 0

#: probability bins 0–0.1, …, 0.9–1 (a probability of exactly 0 takes the no-echo colour): light to dark blue
PROBABILITY_LEVELS = tuple(np.round(np.linspace(0.0, 1.0, 11), 1))
PROBABILITY_COLORS = ((222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214), (66, 146, 198),
                      (33, 113, 181), (8, 81, 156), (8, 48, 107), (37, 37, 110), (20, 10, 60))


def bin_labels():
    return [f"{LEVELS[i]}-{LEVELS[i + 1]}" for i in range(len(COLORS))]


def level_labels_kg_m2():
    """The levels as physical VIL (kg m-2), short text: '0', '0.16', … '91'."""
    return [f"{v:.2g}" if v < 10 else f"{v:.0f}" for v in digital_to_kg_m2(np.array(LEVELS, np.float64))]


def vil_to_index(vil: np.ndarray) -> np.ndarray:
    """Digital VIL → palette index (uint8): 0 for NaN, 1..10 for the bins (bin i holds [L_i, L_{i+1}))."""
    vil = np.asarray(vil, dtype=np.float64)
    index = np.digitize(vil, LEVELS[1:-1]) + 1  # <16 → 1 (also "under"), ≥219 → 10 (also "over")
    index[np.isnan(vil)] = BAD_INDEX
    return index.astype(np.uint8)


def probability_to_bin(p: np.ndarray) -> np.ndarray:
    """Probability in [0, 1] → -1 for exactly 0 (drawn as no echo), else the bin 0..9 (uint8-safe int)."""
    p = np.asarray(p, dtype=np.float64)
    index = np.clip(np.ceil(p * 10.0) - 1, 0, 9).astype(np.int16)
    index[~(p > 0)] = -1
    return index


def palette() -> np.ndarray:
    """(11, 3) uint8: the bad colour then the 10 bin colours."""
    return np.array((BAD,) + COLORS, dtype=np.uint8)


def vil_to_rgb(vil: np.ndarray) -> np.ndarray:
    """Digital VIL (...) → RGB uint8 (..., 3)."""
    return palette()[vil_to_index(vil)]
