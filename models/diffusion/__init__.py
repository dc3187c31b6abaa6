"""Latent diffusion core: noise schedule, training loss, DDPM / DDIM / DPM-Solver++ (2M, 3M) / SA-Solver steps,
alignment guidance.

`models.diffusion.<buffer>` (e.g. `models.diffusion.betas`) gives the paper schedule's buffers as NumPy arrays.
"""
from .ddim import alpha_bar, corrected_eps, ddim_step, ddim_timesteps
from .ddpm import ddpm_step, posterior_mean, predict_x0
from .dpm_solver import dpmpp_2m_step, dpmpp_coefficients, dpmpp_timesteps
from .dpm_solver_3m import dpmpp_3m_coefficients, dpmpp_3m_step
from .guidance import alignment_grad, guidance_shift, guided_eps
from .loss import eps_loss, q_sample
from .sa_solver import sa_solver_coefficients, sa_solver_step
from .schedule import (BETA_SCHEDULES, BUFFERS, DEFAULT_SCHEDULE, Schedule, at, default_schedule, make_betas,
                       make_schedule, timestep_vector)

__all__ = ["BETA_SCHEDULES", "BUFFERS", "DEFAULT_SCHEDULE", "Schedule", "alignment_grad", "alpha_bar", "at",
           "corrected_eps", "ddim_step", "ddim_timesteps", "ddpm_step", "default_schedule", "dpmpp_2m_step",
           "dpmpp_3m_coefficients", "dpmpp_3m_step", "dpmpp_coefficients", "dpmpp_timesteps", "eps_loss",
           "guidance_shift", "guided_eps", "make_betas", "make_schedule", "posterior_mean", "predict_x0",
           "q_sample", "sa_solver_coefficients", "sa_solver_step", "timestep_vector"]


def __getattr__(name):
    if name in BUFFERS or name == "betas_float64":
        return default_schedule().arrays[name]
    raise AttributeError(f"module 'models.diffusion' has no attribute {name!r}")
