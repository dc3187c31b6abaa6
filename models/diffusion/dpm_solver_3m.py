"""DPM-Solver++(3M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
Models") for the discrete-time ε model, with alignment guidance; deterministic (η = 0) or stochastic (η = 1, the
SDE form, "DPM-Solver++(3M) SDE").

The third-order member of the family in `dpm_solver.py`: one network call per step, the data prediction x̂0
interpolated through the current and the two previous steps' predictions.

With α_t = √ᾱ_t, σ_t = √(1−ᾱ_t), λ_t = log(α_t/σ_t), one step from s to t, h = λ_t − λ_s, H = (1 + η) h:

    (1) the exact solution of the (η-)diffusion's linear part, in data-prediction form (DPM-Solver++ paper, the
        exponential-integrator form of its data-prediction ODE; the SDE form adds e^{−ηh} and the noise):
            z_t = (σ_t/σ_s) e^{−ηh} z_s + α_t ∫_0^h (1+η) e^{−(1+η)(h−u)} x̂0(λ_s + u) du + σ_t √(1 − e^{−2ηh}) ξ
    (2) x̂0(λ_s + u) ≈ the quadratic through (λ_s, D0), (λ_r, D1), (λ_q, D2) — this step's and the previous two
        steps' predictions — in Newton form around λ_s:  D0 + u·d + u²·c, with
            h_1 = λ_s − λ_r, h_2 = λ_r − λ_q,  δ_0 = (D0 − D1)/h_1, δ_1 = (D1 − D2)/h_2,
            c = (δ_0 − δ_1)/(h_1 + h_2),       d = δ_0 + h_1 c
    (3) the integrals of (1) against 1, u, u² in closed form, with φ_1 = 1 − e^{−H}, φ_2 = 1 − φ_1/H,
        φ_3 = φ_2/H − 1/2:   ∫ w·1 = φ_1,   ∫ w·u = h φ_2,   ∫ w·u² = −2 h² φ_3     (w the weight in (1))
    so z_t = (σ_t/σ_s) e^{−ηh} z_s + α_t (φ_1 D0 + h φ_2 d − 2 h² φ_3 c) + σ_t √(1 − e^{−2ηh}) ξ, which is linear in
    (D0, D1, D2): the host computes its three weights per step.

The first step is first order (D0 alone; that is DPM-Solver++(1) = DDIM for η = 0), the second second order
(the line through D0, D1); the last step, to ᾱ = 1 (σ = 0, λ = ∞), returns x̂0 ("lower order final").

On the factor 2 in (3): it makes the step exact whenever x̂0 is a quadratic in λ, so the local error is O(h⁴) and
the solver third order (`tests/test_solvers.py` measures both). The multistep third-order update distributed with
the DPM-Solver code, and the samplers derived from it, weigh c's term by φ_3 h² instead of 2 φ_3 h², which keeps
the local error at O(h³) — second order, like the 2M solver.

For an exact x̂0 every η keeps the marginal of z_t: the x̂0 weights sum to α_t φ_1 = α_t − (σ_t/σ_s) e^{−ηh} α_s and
the noise variances to σ_t² (`tests/test_solvers.py`).
"""
from __future__ import annotations

import numpy as np

from .ddim import corrected_eps, ddim_timesteps
from .ddpm import predict_x0
from .schedule import timestep_vector


def dpmpp_3m_timesteps(num_steps: int, timesteps: int = 1000) -> np.ndarray:
    """Same trailing spacing as DDIM: num_steps network evaluations, from T−1 down."""
    return ddim_timesteps(num_steps, timesteps)


def _phi(big_h: float):
    """(φ_1, φ_2, φ_3) of H, with series near 0 where the closed forms cancel."""
    phi1 = -np.expm1(-big_h)
    if big_h < 1e-3:  # φ_2 = H/2 − H²/6 + H³/24 …, φ_3 = −H/6 + H²/24 − H³/120 …
        return phi1, big_h / 2 - big_h ** 2 / 6 + big_h ** 3 / 24, -big_h / 6 + big_h ** 2 / 24 - big_h ** 3 / 120
    phi2 = 1.0 - phi1 / big_h
    return phi1, phi2, phi2 / big_h - 0.5


def multistep_weights(lam: np.ndarray, alpha_t: float, h: float, eta: float, order: int) -> np.ndarray:
    """The weights (on D0, D1, D2) of step (2)–(3) for one step of length h in λ from lam[0], with lam[1], lam[2] the
    previous steps' λ (those beyond `order` unused). Float64."""
    phi1, phi2, phi3 = _phi((1.0 + eta) * h)
    w = np.zeros(3)
    w[0] = phi1
    if order >= 2:
        h1 = lam[0] - lam[1]
        g = h * phi2 / h1  # the weight of δ_0 = (D0 − D1)/h_1 through d
        w[0] += g
        w[1] -= g
    if order >= 3:
        h1, h2 = lam[0] - lam[1], lam[1] - lam[2]
        # d = δ_0 + h_1 c: the u-term's weight h φ_2 also multiplies h_1 c; the u²-term's is −2 h² φ_3
        wc = (h * phi2 * h1 - 2.0 * h * h * phi3) / (h1 + h2)  # weight of c·(h_1 + h_2) = δ_0 − δ_1
        w[0] += wc / h1
        w[1] -= wc / h1 + wc / h2
        w[2] += wc / h2
    return alpha_t * w


def dpmpp_3m_coefficients(schedule, steps: np.ndarray, eta: float = 0.0):
    """Host-side per-step coefficients (float32, one entry per step i from steps[i] to the next timestep or to
    ᾱ = 1): ratio (σ_t/σ_s)e^{−ηh}, the weights (c0, c1, c2) on x̂0 at this step and the two before, and the noise
    scale σ_t √(1 − e^{−2ηh}) (0 for η = 0 and on the last step)."""
    ac = schedule.arrays["alphas_cumprod"].astype(np.float64)
    alpha, sigma = np.sqrt(ac[steps]), np.sqrt(1 - ac[steps])
    return step_coefficients(alpha, sigma, eta)


def step_coefficients(alpha: np.ndarray, sigma: np.ndarray, eta: float, to_data: bool = True):
    """`dpmpp_3m_coefficients` for any grid given by α and σ (descending noise): step i goes from point i to point
    i + 1; with `to_data` the last step goes from the last point to ᾱ = 1, else the grid's last point is the end
    (one step fewer)."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta {eta} is outside [0, 1]")
    lam = np.log(alpha / sigma)
    n = len(alpha) if to_data else len(alpha) - 1
    ratio, c0, c1, c2, noise = (np.zeros(n) for _ in range(5))
    for i in range(n):
        if i == len(alpha) - 1:  # to ᾱ = 1: z = x̂0
            c0[i] = 1.0
            continue
        h = lam[i + 1] - lam[i]
        ratio[i] = sigma[i + 1] / sigma[i] * np.exp(-eta * h)
        noise[i] = sigma[i + 1] * np.sqrt(-np.expm1(-2.0 * eta * h))
        c0[i], c1[i], c2[i] = multistep_weights(lam[i::-1], alpha[i + 1], h, eta, min(i + 1, 3))
    return tuple(x.astype(np.float32) for x in (ratio, c0, c1, c2, noise))


def dpmpp_3m_step(unet, z, t, cond, prev1, prev2, ratio, c0, c1, c2, schedule, align_net=None, y_hat=None,
                  guide_scale=50.0, couple_members: bool = True, noise=None, noise_scale=0.0):
    """One DPM-Solver++(3M) step from timestep t; coefficients from `dpmpp_3m_coefficients` (scalars or 0-d
    tensors); `prev1`, `prev2` the x̂0 of the previous two steps (anything finite where their weight is 0); `noise`
    ξ (like z) and its scale for η > 0. Returns (z_next, x̂0 at t) — the latter becomes the next step's `prev1`."""
    t = timestep_vector(t, z.shape[0])
    eps = corrected_eps(unet, z, t, cond, schedule, align_net, y_hat, guide_scale, couple_members)
    x0 = predict_x0(z, t, eps, schedule)
    z_next = ratio * z + c0 * x0 + c1 * prev1 + c2 * prev2
    if noise is not None:
        z_next = z_next + noise_scale * noise
    return z_next, x0
