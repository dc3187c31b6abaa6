"""SEVIR's VIL scales: digital X (0–255, what the model sees ×1/255) ↔ physical VIL in kg m⁻² (docs/formats.md).

Decoding (SEVIR paper supplement, eq. 2): X ≤ 5 → 0; 5 < X ≤ 18 → (X − 2) / 90.66; X > 18 → exp((X − 83.9) / 38.9).
Encoding is its inverse on each branch: v ≤ 3 / 90.66 (what X = 5 would decode to) → 0; up to 16 / 90.66 (X = 18
by the linear branch) → 90.66 v + 2; from exp((18 − 83.9) / 38.9) → 38.9 ln v + 83.9; the sliver between the two
branches (0.1765 < v < 0.1838, where the published decode jumps) → 18. So decode(encode(decode(X))) = decode(X)
for every X, and encode is monotone.
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np

LINEAR_SLOPE, LINEAR_OFFSET = 90.66, 2.0
LOG_SCALE, LOG_OFFSET = 38.9, 83.9
NO_ECHO_MAX, LINEAR_MAX = 5.0, 18.0
DIGITAL_MAX = 255.0

PHYSICAL_UNITS = "kg m-2"
DIGITAL_UNITS = "1"
DECODE_COMMENT = ("SEVIR digital VIL X (0-255). Physical VIL in kg m-2: 0 if X <= 5; (X - 2) / 90.66 if 5 < X <= 18; "
                  "exp((X - 83.9) / 38.9) if X > 18.")


def digital_to_kg_m2(digital) -> np.ndarray:
    """Digital VIL (any shape, 0–255, float) → physical VIL in kg m⁻² (float32, same shape)."""
    x = np.asarray(digital, dtype=np.float64)
    out = np.where(x <= LINEAR_MAX, (x - LINEAR_OFFSET) / LINEAR_SLOPE, np.exp((x - LOG_OFFSET) / LOG_SCALE))
    out = np.where(x <= NO_ECHO_MAX, 0.0, out)
    return out.astype(np.float32)


def kg_m2_to_digital(vil) -> np.ndarray:
    """Physical VIL in kg m⁻² (any shape, ≥ 0) → digital VIL on 0–255 (float32, not rounded, clipped at 255)."""
    v = np.asarray(vil, dtype=np.float64)
    linear_top = (LINEAR_MAX - LINEAR_OFFSET) / LINEAR_SLOPE
    log_bottom = np.exp((LINEAR_MAX - LOG_OFFSET) / LOG_SCALE)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_branch = LOG_SCALE * np.log(np.maximum(v, log_bottom)) + LOG_OFFSET
    x = np.where(v <= linear_top, LINEAR_SLOPE * v + LINEAR_OFFSET, np.where(v < log_bottom, LINEAR_MAX, log_branch))
    x = np.where(v <= (NO_ECHO_MAX - LINEAR_OFFSET) / LINEAR_SLOPE, 0.0, x)
    return np.clip(x, 0.0, DIGITAL_MAX).astype(np.float32)


_SPELLINGS_PHYSICAL = {"kgm-2", "kg/m2", "kg/m^2", "kgm^-2", "kgm**-2", "kg.m-2", "kg/m**2", "kgm-²", "kg/m²"}
_SPELLINGS_DIGITAL = {"", "1", "dimensionless", "digital", "none", "-"}


def scale_of_units(units: Optional[str]) -> Optional[str]:
    """'physical' (kg m⁻² in any usual spelling), 'digital' (no units, '1' or 'dimensionless') or None (other)."""
    text = re.sub(r"\s+", "", str(units if units is not None else "")).lower()
    if text in _SPELLINGS_PHYSICAL or text.replace(".", "") in _SPELLINGS_PHYSICAL:
        return "physical"
    if text in _SPELLINGS_DIGITAL:
        return "digital"
    return None
