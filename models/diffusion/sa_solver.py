"""SA-Solver (Xue et al. 2023, "SA-Solver: Stochastic Adams Solver for Fast Sampling of Diffusion Models") for the
discrete-time ε model, with alignment guidance: a stochastic Adams predictor-corrector in data-prediction form,
one network call per step.

Why this solver: it is built for few-step *stochastic* sampling — its paper reports it matching or beating the best
earlier samplers at few network calls while injecting noise, which an ensemble needs for its spread — whereas
UniPC, the other candidate, is formulated for the deterministic ODE; and guidance enters, as for DPM-Solver++, as a
corrected ε̂ (the data prediction x̂0 absorbs it).

The stochasticity η = τ² (the paper's τ, constant over the steps): η = 0 is a deterministic Adams method on the
probability-flow ODE, η = 1 the reverse SDE. With α_t = √ᾱ_t, σ_t = √(1−ᾱ_t), λ_t = log(α_t/σ_t), the exact
solution over one step from s to t, h = λ_t − λ_s (the paper's variation-of-constants formula, data prediction):

    z_t = (σ_t/σ_s) e^{−ηh} z_s + α_t ∫_{λ_s}^{λ_t} (1+η) e^{−(1+η)(λ_t−λ)} x̂0(λ) dλ + σ_t √(1 − e^{−2ηh}) ξ      (1)

with ξ ~ N(0, I). Both stages replace x̂0(λ) in (1) by a Lagrange polynomial through known predictions D_j at λ_j:
the integral becomes Σ_j b_j D_j with b_j = α_t ∫ (1+η) e^{−(1+η)(λ_t−λ)} ℓ_j(λ) dλ (ℓ_j the Lagrange basis),
computed on the host by 24-point Gauss–Legendre quadrature (exact to float64 rounding for these smooth integrands).

    step i (one network call), with z̃_i the predicted state at t_i and z_{i−1} the corrected state before it:
    (a) D_i = x̂0(z̃_i, t_i) from the (guided) ε̂ at z̃_i
    (b) SA-Corrector (implicit Adams, includes the new point): z_i = (1) from z_{i−1} over [λ_{i−1}, λ_i] with the
        polynomial through D_i, D_{i−1}, …  (`corrector_order` points) and the SAME ξ as the prediction of z̃_i
    (c) SA-Predictor (explicit Adams): z̃_{i+1} = (1) from z_i over [λ_i, λ_{i+1}] with the polynomial through D_i,
        D_{i−1}, … (`predictor_order` points) and a fresh ξ

The network is evaluated at the predicted state, never at the corrected one, so the corrector costs no call (as
in UniPC). The orders ramp up over the first steps (only the available points), the first step has no
corrector, and the last step, to ᾱ = 1 (σ = 0, λ = ∞), returns D of the last step ("lower order final"). Here:
predictor through 3 points, corrector through 4 (with η = 0 the predictor alone is third order and the corrected
solver fourth, `tests/test_solvers.py`; its 3-point predictor is DPM-Solver++(3M), `dpm_solver_3m.py`). For an
exact x̂0 every stage keeps the marginal of z: the weights b_j sum to α_t − (σ_t/σ_s) e^{−ηh} α_s and the
variances to σ_t² (tests).
"""
from __future__ import annotations

import numpy as np

from .ddim import corrected_eps, ddim_timesteps
from .ddpm import predict_x0
from .schedule import timestep_vector

#: points of the Lagrange polynomials: predictor, corrector
PREDICTOR_ORDER = 3
CORRECTOR_ORDER = 4
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(24)


def sa_solver_timesteps(num_steps: int, timesteps: int = 1000) -> np.ndarray:
    """Same trailing spacing as DDIM: num_steps network evaluations, from T−1 down."""
    return ddim_timesteps(num_steps, timesteps)


def adams_weights(lam_s: float, lam_t: float, points: np.ndarray, eta: float) -> np.ndarray:
    """∫_{λ_s}^{λ_t} (1+η) e^{−(1+η)(λ_t−λ)} ℓ_j(λ) dλ for the Lagrange basis ℓ_j through `points` (λ values),
    float64 (multiply by α_t for the b_j of (1))."""
    h = lam_t - lam_s
    lam = lam_s + 0.5 * (_NODES + 1.0) * h
    weight = 0.5 * h * _WEIGHTS * (1.0 + eta) * np.exp(-(1.0 + eta) * (lam_t - lam))
    out = np.empty(len(points))
    for j, pj in enumerate(points):
        basis = np.ones_like(lam)
        for k, pk in enumerate(points):
            if k != j:
                basis *= (lam - pk) / (pj - pk)
        out[j] = np.dot(weight, basis)
    return out


def step_coefficients(alpha: np.ndarray, sigma: np.ndarray, eta: float, predictor_order: int = PREDICTOR_ORDER,
                      corrector_order: int = CORRECTOR_ORDER, to_data: bool = True) -> dict:
    """`sa_solver_coefficients` for any grid given by α and σ (descending noise); with `to_data` the last step goes
    from the grid's last point to ᾱ = 1, else the last point is the end (one step fewer)."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta {eta} is outside [0, 1]")
    if not 1 <= predictor_order <= 4 or not 1 <= corrector_order <= 4:
        raise ValueError("predictor and corrector orders must be in 1..4")
    lam = np.log(alpha / sigma)
    n = len(alpha) if to_data else len(alpha) - 1
    width = max(predictor_order, corrector_order)
    p_ratio, p_noise, c_ratio, c_noise = (np.zeros(n) for _ in range(4))
    p, c = np.zeros((n, width)), np.zeros((n, width))
    for i in range(n):
        # (b) corrector into point i (from i − 1), through points i, i−1, …
        if i == 0:
            c_ratio[i] = 1.0  # nothing to correct: z_0 = z̃_0
        else:
            h = lam[i] - lam[i - 1]
            k = min(corrector_order, i + 1)
            c_ratio[i] = sigma[i] / sigma[i - 1] * np.exp(-eta * h)
            c_noise[i] = sigma[i] * np.sqrt(-np.expm1(-2.0 * eta * h))
            c[i, :k] = alpha[i] * adams_weights(lam[i - 1], lam[i], lam[i::-1][:k], eta)
        # (c) predictor from point i to i + 1, through points i, i−1, …
        if i == len(alpha) - 1:  # to ᾱ = 1: z = D_i
            p[i, 0] = 1.0
            continue
        h = lam[i + 1] - lam[i]
        k = min(predictor_order, i + 1)
        p_ratio[i] = sigma[i + 1] / sigma[i] * np.exp(-eta * h)
        p_noise[i] = sigma[i + 1] * np.sqrt(-np.expm1(-2.0 * eta * h))
        p[i, :k] = alpha[i + 1] * adams_weights(lam[i], lam[i + 1], lam[i::-1][:k], eta)
    f32 = np.float32
    return {"predictor_ratio": p_ratio.astype(f32), "predictor": p.astype(f32), "predictor_noise": p_noise.astype(f32),
            "corrector_ratio": c_ratio.astype(f32), "corrector": c.astype(f32), "corrector_noise": c_noise.astype(f32)}


def sa_solver_coefficients(schedule, steps: np.ndarray, eta: float = 1.0, predictor_order: int = PREDICTOR_ORDER,
                           corrector_order: int = CORRECTOR_ORDER) -> dict:
    """Host-side per-step coefficients (float32; one row per step i, which evaluates the network at steps[i]):
    `corrector_ratio` (n,), `corrector` (n, K) weights on D_i, D_{i−1}, …, `corrector_noise` (n,) for stage (b)
    into steps[i]; `predictor_ratio`, `predictor`, `predictor_noise` for stage (c) from steps[i] to the next
    timestep (or to ᾱ = 1 on the last row). K = max(predictor_order, corrector_order)."""
    ac = schedule.arrays["alphas_cumprod"].astype(np.float64)
    return step_coefficients(np.sqrt(ac[steps]), np.sqrt(1 - ac[steps]), eta, predictor_order, corrector_order)


def sa_solver_step(unet, z_pred, z_prev, t, cond, history, c_ratio, c_weights, c_noise_scale, noise_prev,
                   p_ratio, p_weights, p_noise_scale, noise, schedule, align_net=None, y_hat=None,
                   guide_scale=50.0, couple_members: bool = True):
    """One SA-Solver step at timestep t: (a) the network at the predicted state `z_pred`, (b) the corrector from
    `z_prev` (the corrected state of the previous step; `z_pred` itself on the first step) with the previous
    step's noise `noise_prev`, (c) the predictor with the fresh `noise`.

    `history`: the data predictions of the previous steps, newest first (K − 1 tensors like z; anything finite
    where their weights are 0). `c_weights`, `p_weights`: K weights each (0-d tensors or scalars), on D_i then
    the history. Returns (z̃ at the next timestep, z corrected at t, D_i) — pass the second as the next `z_prev`
    and push the third onto the history."""
    t = timestep_vector(t, z_pred.shape[0])
    eps = corrected_eps(unet, z_pred, t, cond, schedule, align_net, y_hat, guide_scale, couple_members)
    x0 = predict_x0(z_pred, t, eps, schedule)  # (a)
    points = (x0,) + tuple(history)
    z = c_ratio * z_prev + c_noise_scale * noise_prev  # (b)
    for w, d in zip(c_weights, points):
        z = z + w * d
    z_next = p_ratio * z + p_noise_scale * noise  # (c)
    for w, d in zip(p_weights, points):
        z_next = z_next + w * d
    return z_next, z, x0
