"""Reference forecasts scored beside the model: persistence, optical-flow extrapolation and the STEPS ensemble.

Every deterministic baseline has `extrapolate(context (T_in, H, W), n_leads) → (n_leads, H, W)` and the batched
`forecast(context (B, T_in, H, W), n_leads) → (B, n_leads, H, W)`; an ensemble baseline (`ensemble = True`: STEPS)
takes `members` and per-case `seeds` and returns (B, M, n_leads, H, W). VIL on the 0–1 scale everywhere;
`settings()` gives what a run depends on. `get_baseline(name, **options)` builds one by name.
"""
from __future__ import annotations

from typing import Callable, Dict

from prediff.lookup import build_by_name

from .extrapolation import semi_lagrangian
from .optical_flow import OpticalFlow, estimate_motion
from .persistence import Persistence
from .steps import Steps

BASELINES: Dict[str, Callable] = {"persistence": Persistence, "optical_flow": OpticalFlow, "steps": Steps}


def baseline_names() -> tuple:
    return tuple(BASELINES)


def get_baseline(name: str, **options):
    """A baseline forecaster by name ("persistence", "optical_flow", "steps"); ConfigError listing the valid
    names."""
    return build_by_name(BASELINES, name, "baseline", "baselines", **options)


__all__ = ["BASELINES", "OpticalFlow", "Persistence", "Steps", "baseline_names", "estimate_motion",
           "get_baseline", "semi_lagrangian"]
