"""Forward noising and the ε-prediction training loss (official `latent_diffusion.py`, `p_losses`)."""
from __future__ import annotations

from mindspore import ops

from .schedule import at


def q_sample(z0, t, noise, schedule):
    """z_t = √ᾱ_t·z0 + √(1−ᾱ_t)·ε, per-sample t (B,)."""
    return at(schedule.sqrt_alphas_cumprod, t, z0.ndim) * z0 + \
        at(schedule.sqrt_one_minus_alphas_cumprod, t, z0.ndim) * noise


def eps_loss(eps_pred, eps, t, logvar=None):
    """mean_b L_simple(b) — or, with a learned per-timestep log-variance vector, mean_b(L_simple(b)/e^{lv[t_b]} +
    lv[t_b]) — where L_simple(b) is the mean squared ε error of sample b."""
    per_sample = ops.square(eps_pred - eps).reshape(eps.shape[0], -1).mean(axis=1)
    if logvar is None:
        return per_sample.mean()
    lv = ops.gather(logvar, t, 0)
    return (per_sample / ops.exp(lv) + lv).mean()
