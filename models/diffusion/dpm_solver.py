"""DPM-Solver++(2M) (Lu et al. 2022) for the discrete-time ε model, with alignment guidance.

Why this solver: the model predicts ε, the forecast should be sharp in ≤ 20 steps, and guidance enters as an ε
(score) correction — DPM-Solver++ integrates the probability-flow ODE in data-prediction form with a second-order
multistep rule, needs one network call per step (like DDIM) and stays stable at few steps, where higher-order
single-step or ε-form solvers overshoot.

With α_t = √ᾱ_t, σ_t = √(1−ᾱ_t), λ_t = log(α_t/σ_t) and h = λ_next − λ_cur, one step from s to t:
    (1) x̂0_s from the (guided) ε̂ at s
    (2) first order:  z_t = (σ_t/σ_s) z_s − α_t (e^{−h} − 1) x̂0_s
    (3) second order (2M), with the previous prediction x̂0_r at r and r0 = (λ_s − λ_r)/h:
        D = (1 + 1/(2 r0)) x̂0_s − (1/(2 r0)) x̂0_r;  z_t = (σ_t/σ_s) z_s − α_t (e^{−h} − 1) D
The first step is first order (no history); the last step, to ᾱ = 1 (σ = 0, λ = ∞), is first order too and
returns x̂0 — DPM-Solver++'s "lower order final", which keeps few-step runs stable.
"""
from __future__ import annotations

import numpy as np

from .ddim import corrected_eps, ddim_timesteps
from .ddpm import predict_x0
from .schedule import timestep_vector


def dpmpp_timesteps(num_steps: int, timesteps: int = 1000) -> np.ndarray:
    """Same trailing spacing as DDIM: num_steps network evaluations, from T−1 down."""
    return ddim_timesteps(num_steps, timesteps)


def dpmpp_coefficients(schedule, steps: np.ndarray):
    """Host-side per-step coefficients (float32 arrays, one entry per step i going from steps[i] to the next
    timestep or to ᾱ = 1): ratio σ_t/σ_s, a = −α_t(e^{−h} − 1), and the second-order weights (w_cur, w_prev)
    so that D = w_cur·x̂0_s + w_prev·x̂0_r (w = (1, 0) on first-order steps)."""
    ac = schedule.arrays["alphas_cumprod"].astype(np.float64)
    n = len(steps)
    alpha = np.sqrt(ac[steps])
    sigma = np.sqrt(1 - ac[steps])
    lam = np.log(alpha / sigma)
    ratio, a, w_cur, w_prev = (np.zeros(n) for _ in range(4))
    for i in range(n):
        if i == n - 1:  # to ᾱ = 1: z = x̂0
            ratio[i], a[i], w_cur[i], w_prev[i] = 0.0, 1.0, 1.0, 0.0
            continue
        h = lam[i + 1] - lam[i]
        ratio[i] = sigma[i + 1] / sigma[i]
        a[i] = -alpha[i + 1] * np.expm1(-h)
        if i == 0:
            w_cur[i], w_prev[i] = 1.0, 0.0
        else:
            r0 = (lam[i] - lam[i - 1]) / h
            w_cur[i], w_prev[i] = 1 + 1 / (2 * r0), -1 / (2 * r0)
    return tuple(x.astype(np.float32) for x in (ratio, a, w_cur, w_prev))


def dpmpp_2m_step(unet, z, t, cond, prev_x0, ratio, a, w_cur, w_prev, schedule, align_net=None, y_hat=None,
                  guide_scale=50.0, couple_members: bool = True):
    """One DPM-Solver++(2M) step from timestep t; coefficients from `dpmpp_coefficients` (scalars or 0-d
    tensors). Returns (z_next, x̂0 at t) — pass the latter as `prev_x0` to the next step."""
    t = timestep_vector(t, z.shape[0])
    eps = corrected_eps(unet, z, t, cond, schedule, align_net, y_hat, guide_scale, couple_members)
    x0 = predict_x0(z, t, eps, schedule)
    d = w_cur * x0 + w_prev * prev_x0
    return ratio * z + a * d, x0
