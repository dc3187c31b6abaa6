"""The ensemble sampling loop: all members denoised as one batch, one compiled step per solver step.

`EnsembleSampler.sample` is the whole reverse process, kept short and in plain sight:

    (1) z ~ N(0, I) for every member                                   (M, T_out, h, w, L)
    (2) for each timestep of the solver (DDPM: 999 … 0; DDIM / DPM-Solver++ / SA-Solver: a trailing
        sub-sequence; η > 0 draws fresh noise for DDIM and for the SDE forms of the others):
          one compiled call = UNet ε̂(z, t, context) [+ alignment gradient ∇_z F] + the solver update
        (the multistep solvers carry their previous steps' x̂0 from call to call; SA-Solver also its corrected state
        and the previous step's noise, which its corrector reuses)
    (3) return z (≈ z_0, the target latents)

Noise comes from NumPy generators seeded by the caller (`MemberNoise`), so the same seed gives the same forecast. The solver
coefficients are fed as tensors, so every step reuses one compiled graph; there is no host round trip inside the
loop (nothing is read back until the end).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from mindspore import Tensor, nn

from prediff.compile import compiled

import prediff_models.diffusion as D

from prediff.config.schema import SAMPLERS


class MemberNoise:
    """Standard-normal noise for a batch of rows, drawn from several generators in row order: `parts` is a list of
    (generator, rows). With one part this is exactly `generator.standard_normal((rows, ...))`, so a sequence's
    members do not depend on which other sequences share its UNet call.

    `cut`, for one window of a larger domain (`LatentCut`): each draw is made on the whole domain's latent grid and
    the window's part is returned, so that two windows of one member see the same noise where they overlap."""

    def __init__(self, parts, cut: Optional["LatentCut"] = None):
        self.parts = [(rng, int(rows)) for rng, rows in parts]
        self.cut = cut

    @property
    def rows(self) -> int:
        return sum(rows for _, rows in self.parts)

    def draw(self, shape) -> np.ndarray:
        """(rows,) + shape float32."""
        if self.cut is not None:
            blocks = [self.cut.draw(rng, rows, shape) for rng, rows in self.parts]
        else:
            blocks = [rng.standard_normal((rows,) + tuple(shape), dtype=np.float32) for rng, rows in self.parts]
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


class LatentCut:
    """A window (`top`, `left`, in latent cells) of a domain's latent grid of `height` × `width` cells.

    `draw(rng, rows, (T, h, w, L))` takes from `rng` exactly the numbers of `rng.standard_normal((rows, T, height,
    width, L))`, one (height, width, L) plane at a time so that only one plane is held, and returns the window's
    (rows, T, h, w, L) part. A window covering the whole domain gets exactly the uncut draw."""

    def __init__(self, height: int, width: int, top: int, left: int):
        self.height, self.width, self.top, self.left = int(height), int(width), int(top), int(left)

    def draw(self, rng: np.random.Generator, rows: int, shape) -> np.ndarray:
        frames, h, w, channels = (int(v) for v in shape)
        if self.top < 0 or self.left < 0 or self.top + h > self.height or self.left + w > self.width:
            raise ValueError(f"window {h}x{w} at ({self.top}, {self.left}) lies outside the latent grid "
                             f"{self.height}x{self.width}")
        out = np.empty((rows, frames, h, w, channels), np.float32)
        for r in range(rows):
            for t in range(frames):
                plane = rng.standard_normal((self.height, self.width, channels), dtype=np.float32)
                out[r, t] = plane[self.top:self.top + h, self.left:self.left + w]
        return out


class DenoisingNetworks(nn.Cell):
    """Holds the UNet and the alignment network together, so that their parameters have distinct names
    (`unet.*`, `align_net.*`) inside one compiled graph."""

    def __init__(self, unet: nn.Cell, align_net: Optional[nn.Cell] = None):
        super().__init__()
        self.unet = unet
        self.align_net = align_net


def solver_timesteps(sampler: str, steps: int, timesteps: int) -> np.ndarray:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if sampler == "ddpm":
        return np.arange(timesteps - 1, -1, -1)
    return D.ddim_timesteps(steps, timesteps)


class EnsembleSampler:
    def __init__(self, unet: nn.Cell, schedule, *, sampler: str = "ddim", steps: int = 50, eta: float = 0.0,
                 align_net: Optional[nn.Cell] = None, guide_scale: float = 50.0, couple_members: bool = False):
        self.nets = DenoisingNetworks(unet, align_net)
        self.nets.set_train(False)
        self.schedule = schedule
        self.sampler = sampler
        self.timesteps = solver_timesteps(sampler, steps, schedule.num_timesteps)
        self.eta = float(eta)
        self.aligned = align_net is not None
        self.guide_scale = float(guide_scale)
        self.couple = bool(couple_members)
        self._step = self._compile()

    @property
    def network_evaluations(self) -> int:
        return len(self.timesteps)

    def _compile(self):
        nets, schedule, scale, couple = self.nets, self.schedule, self.guide_scale, self.couple
        align = self.nets.align_net if self.aligned else None
        eta = self.eta

        if self.sampler == "ddpm":
            @compiled
            def step(z, t, t_prev, cond, noise, y_hat):
                return D.ddpm_step(nets.unet, z, t, cond, noise, schedule, align, y_hat, scale, couple)
        elif self.sampler == "ddim":
            @compiled
            def step(z, t, t_prev, cond, noise, y_hat):
                return D.ddim_step(nets.unet, z, t, t_prev, cond, noise, eta, schedule, align, y_hat, scale, couple)
        elif self.sampler == "dpmpp":
            @compiled
            def step(z, t, cond, prev_x0, ratio, a, w_cur, w_prev, noise, noise_scale, y_hat):
                return D.dpmpp_2m_step(nets.unet, z, t, cond, prev_x0, ratio, a, w_cur, w_prev, schedule, align,
                                       y_hat, scale, couple, noise, noise_scale)
        elif self.sampler == "dpmpp3m":
            @compiled
            def step(z, t, cond, prev1, prev2, ratio, c0, c1, c2, noise, noise_scale, y_hat):
                return D.dpmpp_3m_step(nets.unet, z, t, cond, prev1, prev2, ratio, c0, c1, c2, schedule, align,
                                       y_hat, scale, couple, noise, noise_scale)
        else:
            @compiled
            def step(z_pred, z_prev, t, cond, h1, h2, h3, c_ratio, c0, c1, c2, c3, c_noise, noise_prev, p_ratio,
                     p0, p1, p2, p3, p_noise, noise, y_hat):
                return D.sa_solver_step(nets.unet, z_pred, z_prev, t, cond, (h1, h2, h3), c_ratio, (c0, c1, c2, c3),
                                        c_noise, noise_prev, p_ratio, (p0, p1, p2, p3), p_noise, noise, schedule,
                                        align, y_hat, scale, couple)
        return step

    def _coefficient_tensors(self, steps: np.ndarray):
        """The host-side solver coefficients as 0-d tensors: for dpmpp / dpmpp3m one list per coefficient (indexed by
        step), for sasolver one (corrector, predictor) pair of argument tuples per step; None for ddpm / ddim."""
        def scalar(v):
            return Tensor(np.float32(v))

        if self.sampler == "dpmpp":
            return [[scalar(v) for v in c] for c in D.dpmpp_coefficients(self.schedule, steps, self.eta)]
        if self.sampler == "dpmpp3m":
            return [[scalar(v) for v in c] for c in D.dpmpp_3m_coefficients(self.schedule, steps, self.eta)]
        if self.sampler == "sasolver":
            c = D.sa_solver_coefficients(self.schedule, steps, self.eta)
            return [(tuple(map(scalar, (c["corrector_ratio"][i], *c["corrector"][i], c["corrector_noise"][i]))),
                     tuple(map(scalar, (c["predictor_ratio"][i], *c["predictor"][i], c["predictor_noise"][i]))))
                    for i in range(len(steps))]
        return None

    def sample(self, cond: np.ndarray, noise, y_hat: Optional[np.ndarray] = None,
               target_shape=None, progress: Optional[Callable[[], None]] = None) -> np.ndarray:
        """cond (M, T_in, h, w, L) context latents (one row per member) → target latents (M, T_out, h, w, L).
        `noise`: a `MemberNoise` over the M rows, or one NumPy generator for all of them. `y_hat` (M, 1):
        anticipated mean intensity on 0–1, required when sampling with alignment."""
        if self.aligned and y_hat is None:
            raise ValueError("aligned sampling needs y_hat")
        m = cond.shape[0]
        if isinstance(noise, np.random.Generator):
            noise = MemberNoise([(noise, m)])
        if noise.rows != m:
            raise ValueError(f"noise for {noise.rows} rows, but {m} rows to sample")
        tail = tuple(target_shape)
        shape = (m,) + tail
        cond_t = Tensor(np.ascontiguousarray(cond, dtype=np.float32))
        y = Tensor(np.asarray(y_hat if y_hat is not None else np.zeros((m, 1)), dtype=np.float32))
        z = Tensor(noise.draw(tail))  # (1)
        steps = self.timesteps
        zeros = Tensor(np.zeros(shape, np.float32))
        # one 0-d tensor per coefficient and step, made before the loop (indexing a tensor inside the loop would add
        # host-side ops to every step)
        coefs = self._coefficient_tensors(steps)
        prev = prev2 = zeros  # x̂0 of the previous steps (multistep solvers)
        history, z_corrected, noise_prev = (zeros, zeros, zeros), z, zeros  # SA-Solver
        needs_noise = self.sampler == "ddpm" or self.eta > 0
        for i, t in enumerate(steps):  # (2)
            t_vec = Tensor(np.full((m,), t, np.int32))
            fresh = Tensor(noise.draw(tail)) if needs_noise else zeros
            if self.sampler == "dpmpp":
                z, prev = self._step(z, t_vec, cond_t, prev, *(c[i] for c in coefs[:4]), fresh, coefs[4][i], y)
            elif self.sampler == "dpmpp3m":
                z, x0 = self._step(z, t_vec, cond_t, prev, prev2, *(c[i] for c in coefs[:4]), fresh, coefs[4][i], y)
                prev, prev2 = x0, prev
            elif self.sampler == "sasolver":
                corrector, predictor = coefs[i]
                z, z_corrected, x0 = self._step(z, z_corrected, t_vec, cond_t, *history, *corrector, noise_prev,
                                                *predictor, fresh, y)
                history, noise_prev = (x0,) + history[:2], fresh
            else:
                t_prev = Tensor(np.full((m,), steps[i + 1] if i + 1 < len(steps) else -1, np.int32))
                z = self._step(z, t_vec, t_prev, cond_t, fresh, y)
            if progress is not None:
                progress()
        return z.asnumpy()  # (3)
