"""One ancestral DDPM step, as the official `p_sample` (official `latent_diffusion.py`)."""
from __future__ import annotations

from mindspore import ops

from .guidance import guidance_shift
from .schedule import DEFAULT_SCHEDULE, at, timestep_vector


def predict_x0(z, t, eps, schedule):
    """x̂0 = √(1/ᾱ_t)·z_t − √(1/ᾱ_t − 1)·ε̂ (no clamp)."""
    return at(schedule.sqrt_recip_alphas_cumprod, t, z.ndim) * z - \
        at(schedule.sqrt_recipm1_alphas_cumprod, t, z.ndim) * eps


def posterior_mean(x0, z, t, schedule):
    """μ̃_t = coef1_t·x̂0 + coef2_t·z_t."""
    return at(schedule.posterior_mean_coef1, t, z.ndim) * x0 + at(schedule.posterior_mean_coef2, t, z.ndim) * z


def ddpm_step(unet, z, t, cond, noise, schedule=None, align_net=None, y_hat=None, guide_scale=50.0,
              couple_members: bool = True):
    """z_t → z_{t−1}. `t` is an int or an int32 (B,) tensor; `noise` ~ N(0, I) like z.

    1. ε̂ = UNet(z_t, t, cond)            2. x̂0 = √(1/ᾱ_t) z_t − √(1/ᾱ_t − 1) ε̂
    3. μ = coef1_t x̂0 + coef2_t z_t       4. (aligned) μ ← μ − σ̃_t λ ∇_z F(z_t)
    5. z_{t−1} = μ + 1[t > 0] σ̃_t ε'
    """
    schedule = DEFAULT_SCHEDULE if schedule is None else schedule
    t = timestep_vector(t, z.shape[0])
    eps = unet(z, t, cond)
    mean = posterior_mean(predict_x0(z, t, eps, schedule), z, t, schedule)
    if align_net is not None:
        mean = mean + guidance_shift(align_net, z, t, y_hat, guide_scale, schedule, couple_members)
    nonzero = ops.cast(t > 0, z.dtype).reshape((-1,) + (1,) * (z.ndim - 1))
    return mean + nonzero * ops.exp(0.5 * at(schedule.posterior_log_variance_clipped, t, z.ndim)) * noise
