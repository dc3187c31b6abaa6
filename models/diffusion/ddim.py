"""One DDIM step (Song et al. 2021, eq. 12) on any descending sub-sequence of timesteps."""
from __future__ import annotations

import numpy as np
from mindspore import ops

from .ddpm import predict_x0
from .guidance import alignment_grad, guided_eps
from .schedule import DEFAULT_SCHEDULE, at, timestep_vector


def ddim_timesteps(num_steps: int, timesteps: int = 1000) -> np.ndarray:
    """`num_steps` timesteps, descending, "trailing" spacing: the first is T−1 (where sampling starts from pure
    noise) and they are evenly T/num_steps apart; the step after the last one goes to t = −1 (ᾱ = 1)."""
    if not 1 <= num_steps <= timesteps:
        raise ValueError(f"num_steps must be in 1..{timesteps}, got {num_steps}")
    return (np.round(np.arange(timesteps, 0, -timesteps / num_steps)) - 1).astype(np.int64)


def alpha_bar(schedule, t, ndim):
    """ᾱ_t with ᾱ_{−1} = 1, per sample."""
    value = at(schedule.alphas_cumprod, ops.maximum(t, 0), ndim)
    first = ops.cast(t < 0, value.dtype).reshape(value.shape)
    return value * (1 - first) + first


def corrected_eps(unet, z, t, cond, schedule, align_net=None, y_hat=None, guide_scale=50.0,
                  couple_members: bool = True):
    """ε̂ from the UNet, with the alignment guidance folded in when an alignment network is given."""
    eps = unet(z, t, cond)
    if align_net is not None:
        _, grad = alignment_grad(align_net, z, t, y_hat, couple_members)
        eps = guided_eps(eps, grad, t, guide_scale, schedule)
    return eps


def ddim_step(unet, z, t, t_prev, cond, noise, eta=0.0, schedule=None, align_net=None, y_hat=None,
              guide_scale=50.0, couple_members: bool = True):
    """z_t → z_{t_prev} (t_prev = −1 ends at ᾱ = 1).

    1. ε̃ = ε̂ (+ guidance correction)     2. x̂0 = (z_t − √(1−ᾱ_t) ε̃)/√ᾱ_t
    3. σ = η √((1−ᾱ_prev)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev)
    4. z_prev = √ᾱ_prev x̂0 + √(1 − ᾱ_prev − σ²) ε̃ + σ ε'
    """
    schedule = DEFAULT_SCHEDULE if schedule is None else schedule
    t = timestep_vector(t, z.shape[0])
    t_prev = timestep_vector(t_prev, z.shape[0])
    eps = corrected_eps(unet, z, t, cond, schedule, align_net, y_hat, guide_scale, couple_members)
    a_t, a_prev = alpha_bar(schedule, t, z.ndim), alpha_bar(schedule, t_prev, z.ndim)
    x0 = predict_x0(z, t, eps, schedule)
    sigma = eta * ops.sqrt((1 - a_prev) / (1 - a_t)) * ops.sqrt(1 - a_t / a_prev)
    direction = ops.sqrt(ops.clamp(1 - a_prev - sigma * sigma, 0.0, None)) * eps
    return ops.sqrt(a_prev) * x0 + direction + sigma * noise
