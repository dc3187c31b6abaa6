"""The noise schedule (official `make_beta_schedule`), computed in float64 and cast to float32 like the official code.

"linear" means linear in √β (β_i = (√start + (√end − √start)·i/(T−1))²); "sqrt_linear" is linear in β;
"cosine" is Nichol & Dhariwal's schedule with offset s. With α_t = 1 − β_t and ᾱ_t = Π α_s:
    posterior variance σ̃²_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t),   log σ̃²_t clipped at log 1e-20,
    posterior mean μ = coef1_t·x̂0 + coef2_t·z_t, coef1 = β_t √ᾱ_{t−1}/(1 − ᾱ_t), coef2 = (1 − ᾱ_{t−1}) √α_t/(1 − ᾱ_t).
`Schedule` holds these as float32 Tensors under their official names (usable inside compiled graphs);
`schedule.arrays` has the same as NumPy.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import mindspore as ms
from mindspore import Tensor, ops

BETA_SCHEDULES = ("linear", "sqrt_linear", "cosine")
BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
           "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
           "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
           "lvlb_weights", "guidance_eps_coef")


def make_betas(timesteps: int, beta_schedule: str = "linear", linear_start: float = 1e-4, linear_end: float = 2e-2,
               cosine_s: float = 8e-3) -> np.ndarray:
    """β_0..β_{T−1} in float64."""
    if beta_schedule == "linear":
        return np.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=np.float64) ** 2
    if beta_schedule == "sqrt_linear":
        return np.linspace(linear_start, linear_end, timesteps, dtype=np.float64)
    if beta_schedule == "cosine":
        steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps + cosine_s
        alphas = np.cos(steps / (1 + cosine_s) * np.pi / 2) ** 2
        alphas = alphas / alphas[0]
        return np.clip(1 - alphas[1:] / alphas[:-1], 0, 0.999)
    raise ValueError(f"unknown beta_schedule {beta_schedule!r}; valid: {', '.join(BETA_SCHEDULES)}")


def schedule_arrays(betas: np.ndarray) -> Dict[str, np.ndarray]:
    """Every buffer in float64 from β (float64)."""
    alphas = 1.0 - betas
    ac = np.cumprod(alphas)
    ac_prev = np.append(1.0, ac[:-1])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    # the official code forms lvlb_weights from the float32 buffers, in float32
    b32, v32, a32, ac32 = (x.astype(np.float32) for x in (betas, post_var, alphas, ac))
    with np.errstate(divide="ignore", invalid="ignore"):
        lvlb = b32 ** 2 / (2 * v32 * a32 * (1 - ac32))
    lvlb[0] = lvlb[1]
    # Knowledge-alignment guidance as an ε correction (see guidance.py): c_t = σ̃_t √α_t √(1−ᾱ_t) / β_t
    post_std = np.exp(0.5 * np.log(np.maximum(post_var, 1e-20)))
    return {
        "betas": betas, "alphas_cumprod": ac, "alphas_cumprod_prev": ac_prev, "sqrt_alphas_cumprod": np.sqrt(ac),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac), "log_one_minus_alphas_cumprod": np.log(1.0 - ac),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac), "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1),
        "posterior_variance": post_var, "posterior_log_variance_clipped": np.log(np.maximum(post_var, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
        "lvlb_weights": lvlb, "guidance_eps_coef": post_std * np.sqrt(alphas) * np.sqrt(1.0 - ac) / betas,
    }


@ms.jit_class
class Schedule:
    """The diffusion buffers as float32 Tensors by official name; `arrays` holds NumPy copies."""

    def __init__(self, betas64: np.ndarray):
        self.arrays = {k: v.astype(np.float32) for k, v in schedule_arrays(betas64).items()}
        self.arrays["betas_float64"] = betas64
        self.num_timesteps = len(betas64)
        for name in BUFFERS:
            setattr(self, name, Tensor(self.arrays[name]))


def make_schedule(timesteps: int = 1000, beta_schedule: str = "linear", linear_start: float = 1e-4,
                  linear_end: float = 2e-2, cosine_s: float = 8e-3) -> Schedule:
    return Schedule(make_betas(timesteps, beta_schedule, linear_start, linear_end, cosine_s))


def at(buffer: Tensor, t: Tensor, ndim: int) -> Tensor:
    """buffer[t] for per-sample timesteps t (B,), shaped (B, 1, …, 1) to broadcast over an ndim-D tensor."""
    return ops.gather(buffer, t, 0).reshape((-1,) + (1,) * (ndim - 1))


def timestep_vector(t, batch: int) -> Tensor:
    """A Python int or a (B,) tensor → an int32 (B,) tensor."""
    if isinstance(t, int):
        return ops.fill(ms.int32, (batch,), t)
    return ops.cast(t, ms.int32)


#: The paper's schedule (1000 steps, "linear" in √β from 1e-4 to 2e-2), built once at import.
DEFAULT_SCHEDULE = make_schedule()


def default_schedule() -> Schedule:
    return DEFAULT_SCHEDULE
