"""DPM-Solver++(2M) (Lu et al. 2022) for the discrete-time ε model, with alignment guidance; deterministic (η = 0,
the probability-flow ODE) or stochastic (η = 1, the SDE variant "SDE-DPM-Solver++(2M)").

Why this solver: the model predicts ε, the forecast should be sharp in ≤ 20 steps, and guidance enters as an ε
(score) correction — DPM-Solver++ integrates the probability-flow ODE in data-prediction form with a second-order
multistep rule, needs one network call per step (like DDIM) and stays stable at few steps, where higher-order
single-step or ε-form solvers overshoot.

With α_t = √ᾱ_t, σ_t = √(1−ᾱ_t), λ_t = log(α_t/σ_t), h = λ_next − λ_cur and noise level η ∈ [0, 1], one step
from s to t:
    (1) x̂0_s from the (guided) ε̂ at s
    (2) first order:  z_t = (σ_t/σ_s) e^{−ηh} z_s + α_t (1 − e^{−(1+η)h}) x̂0_s + σ_t √(1 − e^{−2ηh}) ξ,  ξ ~ N(0, I)
    (3) second order (2M), with the previous prediction x̂0_r at r and r0 = (λ_s − λ_r)/h: x̂0_s in (2) becomes
        D = (1 + 1/(2 r0)) x̂0_s − (1/(2 r0)) x̂0_r
η = 0 is the ODE solver of the paper (their eq. for DPM-Solver++(2M)); η = 1 is its SDE form (SDE-DPM-Solver++(2M),
same paper). For an exact x̂0 every η keeps the marginal of z_t: the x̂0 weights sum to α_t (since
(σ_t/σ_s) α_s = α_t e^{−h}) and the noise variances to σ_t². The first step is first order (no history); the last
step, to ᾱ = 1 (σ = 0, λ = ∞), is first order too and returns x̂0 — "lower order final", which keeps few-step runs
stable.
"""
from __future__ import annotations

import numpy as np

from .ddim import corrected_eps, ddim_timesteps
from .ddpm import predict_x0
from .schedule import timestep_vector


def dpmpp_timesteps(num_steps: int, timesteps: int = 1000) -> np.ndarray:
    """Same trailing spacing as DDIM: num_steps network evaluations, from T−1 down."""
    return ddim_timesteps(num_steps, timesteps)


def dpmpp_coefficients(schedule, steps: np.ndarray, eta: float = 0.0):
    """Host-side per-step coefficients (float32 arrays, one entry per step i going from steps[i] to the next
    timestep or to ᾱ = 1): ratio (σ_t/σ_s)e^{−ηh}, a = α_t(1 − e^{−(1+η)h}), the second-order weights (w_cur, w_prev)
    so that D = w_cur·x̂0_s + w_prev·x̂0_r (w = (1, 0) on first-order steps), and the noise scale
    σ_t √(1 − e^{−2ηh}) (0 for η = 0 and on the last step)."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta {eta} is outside [0, 1]")
    ac = schedule.arrays["alphas_cumprod"].astype(np.float64)
    n = len(steps)
    alpha = np.sqrt(ac[steps])
    sigma = np.sqrt(1 - ac[steps])
    lam = np.log(alpha / sigma)
    ratio, a, w_cur, w_prev, noise = (np.zeros(n) for _ in range(5))
    for i in range(n):
        if i == n - 1:  # to ᾱ = 1: z = x̂0
            ratio[i], a[i], w_cur[i], w_prev[i] = 0.0, 1.0, 1.0, 0.0
            continue
        h = lam[i + 1] - lam[i]
        ratio[i] = sigma[i + 1] / sigma[i] * np.exp(-eta * h)
        a[i] = -alpha[i + 1] * np.expm1(-(1.0 + eta) * h)
        noise[i] = sigma[i + 1] * np.sqrt(-np.expm1(-2.0 * eta * h))
        if i == 0:
            w_cur[i], w_prev[i] = 1.0, 0.0
        else:
            r0 = (lam[i] - lam[i - 1]) / h
            w_cur[i], w_prev[i] = 1 + 1 / (2 * r0), -1 / (2 * r0)
    return tuple(x.astype(np.float32) for x in (ratio, a, w_cur, w_prev, noise))


def dpmpp_2m_step(unet, z, t, cond, prev_x0, ratio, a, w_cur, w_prev, schedule, align_net=None, y_hat=None,
                  guide_scale=50.0, couple_members: bool = True, noise=None, noise_scale=0.0):
    """One DPM-Solver++(2M) step from timestep t; coefficients from `dpmpp_coefficients` (scalars or 0-d
    tensors); `noise` ξ (like z) and its scale for η > 0. Returns (z_next, x̂0 at t) — pass the latter as `prev_x0`
    to the next step."""
    t = timestep_vector(t, z.shape[0])
    eps = corrected_eps(unet, z, t, cond, schedule, align_net, y_hat, guide_scale, couple_members)
    x0 = predict_x0(z, t, eps, schedule)
    d = w_cur * x0 + w_prev * prev_x0
    z_next = ratio * z + a * d
    if noise is not None:
        z_next = z_next + noise_scale * noise
    return z_next, x0
