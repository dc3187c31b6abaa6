"""Diagonal-Gaussian posterior of the VAE as stateless functions of the encoder "moments".

`moments` is the encoder output (N, 2·L, ...): channels [0, L) are the mean, [L, 2L) the raw log-variance.
Every helper takes tensors and returns tensors, so it can be called inside `ms.jit` and inside
differentiated functions. The log-variance is clamped to [-30, 20] exactly like the official
`DiagonalGaussianDistribution` (official `utils/distributions.py`).
"""
from __future__ import annotations

from typing import Tuple

from mindspore import Tensor, ops

LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0


def split_moments(moments: Tensor) -> Tuple[Tensor, Tensor]:
    """(N, 2L, ...) → (mean (N, L, ...), logvar (N, L, ...) clamped to [-30, 20])."""
    mean, logvar = ops.chunk(moments, 2, axis=1)
    return mean, ops.clamp(logvar, LOGVAR_MIN, LOGVAR_MAX)


def mode(moments: Tensor) -> Tensor:
    """Most likely latent: the mean, (N, L, ...)."""
    mean, _ = split_moments(moments)
    return mean


def sample(moments: Tensor, noise: Tensor) -> Tensor:
    """Reparameterised draw `mean + exp(logvar / 2) · noise`; `noise` ~ N(0, I) with the mean's shape."""
    mean, logvar = split_moments(moments)
    return mean + ops.exp(0.5 * logvar) * noise


def kl(moments: Tensor) -> Tensor:
    """KL(q ‖ N(0, I)) per sample, (N,): 0.5 · Σ over all non-batch axes of (mean² + var − 1 − logvar)."""
    mean, logvar = split_moments(moments)
    per_element = mean * mean + ops.exp(logvar) - 1.0 - logvar
    return 0.5 * per_element.sum(axis=tuple(range(1, per_element.ndim)))
