"""Knowledge-alignment guidance (gaozhihan/PreDiff `diffusion/knowledge_alignment/sevir.py`).

The alignment network U(z_t, t) predicts each target frame's mean intensity; with an anticipated value ŷ per
member, F(z_t) measures the disagreement and every denoising step moves the posterior mean down its gradient:

    (1) pred = mean over frames of U(z_t, t)                       (B, 1)
    (2) F = ‖pred − ŷ‖₂ over all members at once (official: members coupled through one norm), or
        F = Σ_b |pred_b − ŷ_b| (independent members: each gets the gradient it would get alone)
    (3) g = ∇_{z_t} F — the gradient flows through the alignment network to the noisy latent itself
    (4) μ ← μ − σ̃_t · λ · g      (σ̃_t = exp(½ log σ̃²_t), λ the guide scale)

The same shift written as an ε correction, for samplers without a posterior mean (DDIM, DPM-Solver++): DDPM's mean
is μ = coef1·x̂0 + coef2·z with x̂0 = √(1/ᾱ)·z − √(1/ᾱ−1)·ε, so changing ε by δ moves μ by
−coef1·√(1/ᾱ−1)·δ = −β/(√α·√(1−ᾱ))·δ. Choosing δ = c_t·λ·g with c_t = σ̃_t·√α_t·√(1−ᾱ_t)/β_t reproduces (4)
exactly. δ is a correction of the score (∇ log p = −ε/√(1−ᾱ)), so every sampler that consumes the corrected ε
targets the same guided distribution.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import ops

from .schedule import at


def _objective(align_net, couple_members: bool):
    def objective(z, t, y_hat):
        pred = align_net(z, t).mean(axis=1)  # (B, 1)
        diff = pred - y_hat
        if couple_members:
            return ops.sqrt(ops.sum(diff * diff))
        return ops.sum(ops.abs(diff))

    return objective


def alignment_grad(align_net, z, t, y_hat, couple_members: bool = True):
    """(F, ∇_z F) for noisy latents z (B, T, H, W, C), timesteps t (B,) and targets ŷ (B, 1) on 0–1."""
    return ms.value_and_grad(_objective(align_net, couple_members), grad_position=0)(z, t, y_hat)


def guidance_shift(align_net, z, t, y_hat, guide_scale, schedule, couple_members: bool = True):
    """The amount added to the posterior mean: −σ̃_t · guide_scale · ∇_z F."""
    _, grad = alignment_grad(align_net, z, t, y_hat, couple_members)
    return -ops.exp(0.5 * at(schedule.posterior_log_variance_clipped, t, z.ndim)) * guide_scale * grad


def guided_eps(eps, grad, t, guide_scale, schedule):
    """ε + c_t · guide_scale · ∇F: the ε correction equivalent to the posterior-mean shift."""
    return eps + at(schedule.guidance_eps_coef, t, eps.ndim) * guide_scale * grad
