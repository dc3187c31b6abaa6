"""The I3D video network behind the Fréchet video distance (FVD), with the official parameter tree.

* `InceptionI3d(num_classes=400, in_channels=3)`: the network (inference only), see `inception`.
* `load_i3d_state_dict(net, state)`: official state dict (key → NumPy array) into the network; the BatchNorm
  `num_batches_tracked` counters of the official file are checked to be scalars and otherwise ignored (they do
  not affect inference).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .. import environment  # noqa: F401  (before mindspore)
from ..official import StateDictMismatch, load_official_state_dict
from .inception import MIN_FRAMES, InceptionI3d

COUNTER_SUFFIX = ".num_batches_tracked"

__all__ = ["COUNTER_SUFFIX", "MIN_FRAMES", "InceptionI3d", "load_i3d_state_dict"]


def load_i3d_state_dict(net: InceptionI3d, state: Mapping[str, np.ndarray]) -> None:
    """Load an official I3D state dict; `StateDictMismatch` on any missing, unexpected or mis-shaped entry."""
    weights = {}
    for key, value in state.items():
        if key.endswith(COUNTER_SUFFIX):
            if np.asarray(value).size != 1:
                raise StateDictMismatch(f"state dict does not match the network: {key} is not a scalar counter")
            continue
        if np.asarray(value).dtype.kind != "f":
            raise StateDictMismatch(f"state dict does not match the network: {key} is not a float tensor")
        weights[key] = value
    load_official_state_dict(net, weights)
