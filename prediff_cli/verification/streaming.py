"""Base class of the streaming scores: init / accumulate / compute, with a resumable state.

A streaming score keeps only sums and counts (NumPy arrays), so a long evaluation can be split into any number of
`accumulate` calls, saved with `state_dict()` (a flat dict of NumPy arrays, `np.savez`-compatible without
pickling) and resumed with `load_state_dict()`; `compute()` turns the totals into JSON-ready numbers.

The arrays are created at the first `accumulate`, when the number of lead times T (and, for ensemble scores, of
members M) is known; later calls must keep those sizes.
"""
from __future__ import annotations

import json
from typing import Dict, Mapping, Optional

import numpy as np

from prediff.errors import InputError

SETTINGS_KEY = "settings_json"


class StreamingScore:
    """Subclasses set `name`, implement `settings()`, `accumulate()` and `compute()`, and allocate their sums
    with `_allocate({name: shape}, dtype)`."""

    name = "score"

    def __init__(self) -> None:
        self._state: Dict[str, np.ndarray] = {}

    def settings(self) -> dict:
        """JSON-serialisable constructor settings; a state is only loaded into a score with equal settings."""
        return {}

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._state = {}

    @property
    def empty(self) -> bool:
        return not self._state

    def _allocate(self, shapes: Mapping[str, tuple], dtype=np.float64) -> None:
        """Create zero sums on first use; afterwards check that the shapes still agree."""
        for key, shape in shapes.items():
            if key not in self._state:
                self._state[key] = np.zeros(shape, dtype)
            elif self._state[key].shape != tuple(shape):
                raise InputError(f"{self.name}: this batch gives state {key!r} the shape {tuple(shape)} but earlier "
                                 f"batches gave {self._state[key].shape} (lead times or members changed)")

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of the sums plus the settings (0-d unicode array under "settings_json")."""
        out = {key: value.copy() for key, value in self._state.items()}
        out[SETTINGS_KEY] = np.array(json.dumps(self.settings(), sort_keys=True))
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Replace the sums with those of `state` (from `state_dict`); InputError if the settings differ."""
        saved = state.get(SETTINGS_KEY)
        if saved is None:
            raise InputError(f"{self.name}: state has no {SETTINGS_KEY!r} entry")
        saved_settings = json.loads(str(np.asarray(saved)))
        if saved_settings != json.loads(json.dumps(self.settings(), sort_keys=True)):
            raise InputError(f"{self.name}: saved state was made with settings {saved_settings}, "
                             f"this score has {self.settings()}")
        self._state = {key: np.array(value, copy=True) for key, value in state.items() if key != SETTINGS_KEY}

    def _require_data(self) -> None:
        if self.empty:
            raise InputError(f"{self.name}: nothing accumulated yet")


def ratio(numerator, denominator, fallback: Optional[float] = None):
    """numerator / denominator elementwise in float64, `fallback` (NaN if None) where the denominator is 0."""
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan if fallback is None else fallback)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def to_json(value):
    """Float arrays/scalars → Python floats or nested lists; NaN and ±inf → None (JSON has no NaN)."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        item = arr.item()
        if isinstance(item, float) and not np.isfinite(item):
            return None
        return item
    return [to_json(v) for v in arr]
