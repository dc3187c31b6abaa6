"""The ensemble sampling loop: all members denoised as one batch, one compiled step per solver step.

`EnsembleSampler.sample` is the whole reverse process, kept short and in plain sight:

    (1) z ~ N(0, I) for every member                                   (M, T_out, h, w, L)
    (2) for each timestep of the solver (DDPM: 999 … 0; DDIM / DPM-Solver++: a trailing sub-sequence;
        η > 0 draws fresh noise for DDIM and for DPM-Solver++'s SDE form):
          one compiled call = UNet ε̂(z, t, context) [+ alignment gradient ∇_z F] + the solver update
    (3) return z (≈ z_0, the target latents)

Noise comes from NumPy generators seeded by the caller (`MemberNoise`), so the same seed gives the same forecast. The solver
coefficients are fed as tensors, so every step reuses one compiled graph; there is no host round trip inside the
loop (nothing is read back until the end).

`EnsembleSampler.sample_domain` runs the same steps over a latent field larger than the UNet's window, one window at a
time within each step, blending the windows back into the field after each (see `tiled_forecast`).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
from mindspore import Tensor, nn

from prediff.pipelines.compile import compiled

import prediff_models.diffusion as D

from prediff.config.schema import SAMPLERS


class MemberNoise:
    """Standard-normal noise for a batch of rows, drawn from several generators in row order: `parts` is a list of
    (generator, rows). With one part this is exactly `generator.standard_normal((rows, ...))`, so a sequence's
    members do not depend on which other sequences share its UNet call."""

    def __init__(self, parts):
        self.parts = [(rng, int(rows)) for rng, rows in parts]

    @property
    def rows(self) -> int:
        return sum(rows for _, rows in self.parts)

    def draw(self, shape) -> np.ndarray:
        """(rows,) + shape float32."""
        blocks = [rng.standard_normal((rows,) + tuple(shape), dtype=np.float32) for rng, rows in self.parts]
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


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
        else:
            @compiled
            def step(z, t, cond, prev_x0, ratio, a, w_cur, w_prev, noise, noise_scale, y_hat):
                return D.dpmpp_2m_step(nets.unet, z, t, cond, prev_x0, ratio, a, w_cur, w_prev, schedule, align,
                                       y_hat, scale, couple, noise, noise_scale)
        return step

    def sample(self, cond: np.ndarray, noise, y_hat: Optional[np.ndarray] = None,
               target_shape=None, progress: Optional[Callable[[], None]] = None) -> np.ndarray:
        """cond (M, T_in, h, w, L) context latents (one row per member) → target latents (M, T_out, h, w, L).
        `noise`: a `MemberNoise` over the M rows, or one NumPy generator for all of them. `y_hat` (M, 1):
        anticipated mean intensity on 0–1, required when sampling with alignment."""
        m = cond.shape[0]
        noise = self._noise(noise, m, y_hat)
        tail = tuple(target_shape)
        cond_t = Tensor(np.ascontiguousarray(cond, dtype=np.float32))
        y = self._y(y_hat, m)
        loop = _SolverLoop(self, m, (m,) + tail)
        z = Tensor(noise.draw(tail))  # (1)
        prev = loop.zeros
        for i in range(len(self.timesteps)):  # (2)
            fresh = Tensor(noise.draw(tail)) if loop.needs_noise else loop.zeros
            z, prev = loop.step(i, z, prev, cond_t, fresh, y)
            if progress is not None:
                progress()
        return z.asnumpy()  # (3)

    def sample_domain(self, windows: Sequence["DomainWindow"], noise, domain_shape,
                      progress: Optional[Callable[[], None]] = None) -> np.ndarray:
        """The same reverse process on a domain larger than the UNet's window, all windows advanced together:
        `domain_shape` (T_out, H, W, L) latents, drawn and updated as one field; at every solver step each window
        (`DomainWindow`: its context latents, anticipated intensity, position and blending weight) takes its part
        of the field through one compiled step, and the field becomes the windows' results blended with their
        weights (which add up to 1 at every latent cell). Noise (`MemberNoise` over the M rows) is drawn on the
        whole field. → (M,) + domain_shape.

        Where windows overlap they start every step from the same latents and the same noise, and the blend makes
        them one field again, so the members are single fields across the whole domain, not patchworks."""
        m = windows[0].cond.shape[0]
        noise = self._noise(noise, m, windows[0].y_hat)
        field_shape = tuple(int(v) for v in domain_shape)
        loop = _SolverLoop(self, m, (m,) + tuple(windows[0].target_shape))
        parts = [(Tensor(np.ascontiguousarray(w.cond, dtype=np.float32)), self._y(w.y_hat, m), w.cells,
                  w.weight[None, None, :, :, None].astype(np.float32)) for w in windows]
        z = noise.draw(field_shape)  # (1)
        prev = np.zeros_like(z) if loop.dpmpp else None
        for i in range(len(self.timesteps)):  # (2)
            fresh = noise.draw(field_shape) if loop.needs_noise else None
            z_next = np.zeros_like(z)
            prev_next = np.zeros_like(z) if loop.dpmpp else None
            for cond_t, y, cells, weight in parts:
                cut = (slice(None), slice(None)) + cells

                def part(field):
                    return loop.zeros if field is None else Tensor(np.ascontiguousarray(field[cut]))

                z_w, prev_w = loop.step(i, part(z), part(prev), cond_t, part(fresh), y)
                z_next[cut] += weight * z_w.asnumpy()
                if loop.dpmpp:
                    prev_next[cut] += weight * prev_w.asnumpy()
                if progress is not None:
                    progress()
            z, prev = z_next, prev_next
        return z  # (3)

    def _noise(self, noise, m: int, y_hat) -> "MemberNoise":
        if self.aligned and y_hat is None:
            raise ValueError("aligned sampling needs y_hat")
        if isinstance(noise, np.random.Generator):
            noise = MemberNoise([(noise, m)])
        if noise.rows != m:
            raise ValueError(f"noise for {noise.rows} rows, but {m} rows to sample")
        return noise

    @staticmethod
    def _y(y_hat, m: int) -> Tensor:
        return Tensor(np.asarray(y_hat if y_hat is not None else np.zeros((m, 1)), dtype=np.float32))


class DomainWindow:
    """One window of `EnsembleSampler.sample_domain`: `cond` (M, T_in, h, w, L) its context latents, `y_hat` (M, 1)
    its anticipated intensity or None, `top`/`left` its first latent cell, `weight` (h, w) its blending weight,
    `target_shape` (T_out, h, w, L)."""

    def __init__(self, cond: np.ndarray, y_hat: Optional[np.ndarray], top: int, left: int, weight: np.ndarray,
                 target_shape):
        self.cond, self.y_hat, self.weight = cond, y_hat, np.asarray(weight, np.float32)
        self.target_shape = tuple(int(v) for v in target_shape)
        h, w = self.target_shape[1:3]
        if self.weight.shape != (h, w):
            raise ValueError(f"window weight of shape {self.weight.shape}; expected {(h, w)}")
        self.cells = (slice(int(top), int(top) + h), slice(int(left), int(left) + w))


class _SolverLoop:
    """What every solver step of one sampling run shares: the solver's coefficients as tensors (one 0-d tensor
    per coefficient and step, made before the loop: indexing a tensor inside the loop would add host-side ops to
    every step), the timestep vectors, and zeros for a step without noise or history. `step(i, ...)` is solver
    step i: one compiled call."""

    def __init__(self, sampler: EnsembleSampler, rows: int, shape):
        self.sampler, steps = sampler, sampler.timesteps
        self.dpmpp = sampler.sampler == "dpmpp"
        self.needs_noise = sampler.sampler == "ddpm" or sampler.eta > 0
        self.zeros = Tensor(np.zeros(shape, np.float32))
        self.t = [Tensor(np.full((rows,), t, np.int32)) for t in steps]
        if self.dpmpp:
            self.coefs = [[Tensor(np.float32(v)) for v in c]
                          for c in D.dpmpp_coefficients(sampler.schedule, steps, sampler.eta)]
        else:
            self.t_prev = [Tensor(np.full((rows,), steps[i + 1] if i + 1 < len(steps) else -1, np.int32))
                           for i in range(len(steps))]

    def step(self, i: int, z, prev, cond, fresh, y):
        """(z at step i+1, the x̂0 estimate for DPM-Solver++'s next step, else `prev` unchanged)."""
        if self.dpmpp:
            c = self.coefs
            return self.sampler._step(z, self.t[i], cond, prev, *(k[i] for k in c[:4]), fresh, c[4][i], y)
        return self.sampler._step(z, self.t[i], self.t_prev[i], cond, fresh, y), prev
