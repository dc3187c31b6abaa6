"""Persistence (Eulerian) baseline: the last observed frame, unchanged, for every lead time.

The reference every nowcast must beat; in the PreDiff paper it scores CSI-M 0.2613 on the SEVIR-LR test split.
"""
from __future__ import annotations

import numpy as np

from .inputs import check_context, check_leads


class Persistence:
    """extrapolate(context (T_in, H, W), n_leads) → (n_leads, H, W); forecast(context (B, T_in, H, W), n_leads)
    → (B, n_leads, H, W); 0–1 VIL in, float32 out."""

    name = "persistence"

    def settings(self) -> dict:
        return {}

    def extrapolate(self, context, n_leads: int) -> np.ndarray:
        context = check_context(context, batched=False)
        return self.forecast(context[None], n_leads)[0]

    def forecast(self, context, n_leads: int) -> np.ndarray:
        context = check_context(context, batched=True)
        n_leads = check_leads(n_leads)
        return np.repeat(context[:, -1:], n_leads, axis=1)


def extrapolate(context, n_leads: int) -> np.ndarray:
    """The last frame of context (T_in, H, W) repeated: (n_leads, H, W)."""
    return Persistence().extrapolate(context, n_leads)


def forecast(context, n_leads: int) -> np.ndarray:
    """Batched persistence: context (B, T_in, H, W) → (B, n_leads, H, W)."""
    return Persistence().forecast(context, n_leads)
