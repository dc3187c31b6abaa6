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

from prediff.errors import InputError

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


#: the scales an array without units can be given in (the Python API's `scale=`): name → how it is read
ARRAY_SCALES = {"0-1": "unit", "digital": "digital", "kg m-2": "physical"}
#: physical VIL above this is not VIL (the digital scale saturates at 81 kg m-2; no storm holds more than ~120)
PHYSICAL_MAX = 200.0
#: a float sequence whose scale (0-1 or 0-255) is told by its maximum is scanned only up to this many values
MAX_SCAN_VALUES = 1 << 28


def to_model_scale(values, scale: str, what: str, hint: str = "") -> np.ndarray:
    """VIL `values` (any shape) on `scale` — "unit" (0–1), "digital" (SEVIR 0–255) or "physical" (kg m⁻²) — to
    the model's 0–1 scale (float32). Missing, negative or out-of-scale values are refused in one line naming `what`;
    `hint` is added to the out-of-scale message."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v.astype(np.float32)
    if not np.all(np.isfinite(v)):
        raise InputError(f"{what} has missing, NaN or infinite values")
    low, high = float(v.min()), float(v.max())
    if low < 0:
        raise InputError(f"{what} has negative values (min {low:g}); VIL is >= 0")
    top, name = {"unit": (1.0, "0-1"), "digital": (DIGITAL_MAX, "digital 0-255"),
                 "physical": (PHYSICAL_MAX, PHYSICAL_UNITS)}[scale]
    if high > top:
        raise InputError(f"{what} exceeds the {name} scale (max {high:g}, at most {top:g}){hint}")
    if scale == "physical":
        return kg_m2_to_digital(v) / np.float32(DIGITAL_MAX)
    return (v / DIGITAL_MAX if scale == "digital" else v).astype(np.float32)


def check_scan_size(values: int, what: str, remedy: str) -> None:
    """Refuse, before reading anything, a scale scan over more than `MAX_SCAN_VALUES` values."""
    if values > MAX_SCAN_VALUES:
        raise InputError(f"{what} declares {values:,} values; telling 0-1 from 0-255 by their maximum would read "
                         f"them all (at most {MAX_SCAN_VALUES:,}): {remedy}")
