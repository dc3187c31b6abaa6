"""train-align: the knowledge-alignment network on a frozen VAE (reference spec §5.2-5.3).

Target = per-frame mean intensity of the target frames in pixel space on 0–1, (B, T_out, 1). Input = the noisy
latent z_t of a posterior sample of the target frames at t ~ U{0..T-1}. Loss = MSE (MAE is logged too).
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
from mindspore import Tensor, nn, ops

from prediff.config import Config
from prediff.pipelines.latents import frozen, jit_encoder, posterior_sample

from .lr_schedule import lr_table
from .task import TrainingTask, reducer as _reducer
from .train_step import StepDropout, TrainStep


class AlignmentLoss(nn.Cell):
    """`construct(z0, t, noise, target) -> (mse, mae)`; z0/noise (B,T,h,w,L), t int32 (B,), target (B,T,1)."""

    def __init__(self, align_net: nn.Cell, schedule):
        super().__init__()
        from prediff_models.diffusion import q_sample

        self.align_net = align_net
        self.schedule = schedule
        self._q_sample = q_sample

    def construct(self, z0, t, noise, target):
        zt = self._q_sample(z0, t, noise, self.schedule)
        pred = self.align_net(zt, t)
        err = pred - target
        return ops.mean(ops.square(err)), ops.mean(ops.abs(err))


def average_intensity(frames: np.ndarray) -> np.ndarray:
    """(B, T, H, W, C) on 0–1 → per-frame mean (B, T, 1), the alignment target (spec §5.2)."""
    return frames.mean(axis=(2, 3, 4), dtype=np.float64).astype(np.float32)[..., None]


class AlignTask(TrainingTask):
    component = "align"

    def __init__(self, config: Config, align_net: nn.Cell, vae: nn.Cell, *, accum_steps: int, total_steps: int,
                 reducer_factory=None):
        from prediff_models.diffusion import make_schedule

        d, tr = config.diffusion, config.train_align
        self.net = align_net
        self.model_kwargs = config.model_kwargs("align")
        self.in_len = config.data.in_len
        self.timesteps = d.timesteps
        self.scale_factor = d.scale_factor
        self.encode = jit_encoder(frozen(vae))
        self.loss_cell = AlignmentLoss(align_net, make_schedule(d.timesteps, d.beta_schedule, d.linear_start,
                                                                d.linear_end, d.cosine_s))
        params = list(align_net.trainable_params())
        self.dropout = StepDropout.install(align_net)  # masks keyed by (seed, step): exact resume
        self.train_steps = [TrainStep(self.loss_cell, params,
                                      lr_schedule=lr_table(total_steps, tr.lr, tr.warmup_ratio, tr.warmup_min_lr_ratio,
                                                           tr.min_lr_ratio),
                                      betas=tr.betas, weight_decay=tr.weight_decay, grad_clip=tr.grad_clip,
                                      accum_steps=accum_steps,
                                      grad_reducer=_reducer(reducer_factory, params),
                                      dropout=self.dropout, name="align")]

    def _inputs(self, batch: np.ndarray, rng: np.random.Generator):
        target_frames = batch[:, self.in_len:]
        moments = self.encode(Tensor(np.ascontiguousarray(target_frames)))
        shape = moments.shape[:-1] + (moments.shape[-1] // 2,)
        z0 = posterior_sample(moments, Tensor(rng.standard_normal(shape, dtype=np.float32))) * self.scale_factor
        t = Tensor(rng.integers(0, self.timesteps, size=(batch.shape[0],)).astype(np.int32))
        noise = Tensor(rng.standard_normal(shape, dtype=np.float32))
        return z0, t, noise, Tensor(average_intensity(target_frames))

    def optimizer_step(self, step: int, batches: List[np.ndarray], rng: np.random.Generator) -> Dict[str, float]:
        out = self.train_steps[0]([self._inputs(b, rng) for b in batches])
        return {"loss": out["loss"], "mae": out["aux"][0], "lr": out["lr"], "grad_norm": out["grad_norm"]}

    def validation_metrics(self, batch: np.ndarray, rng: np.random.Generator) -> Dict[str, float]:
        mse, mae = self.loss_cell(*self._inputs(batch, rng))
        return {"val_loss": float(mse.asnumpy()), "val_mae": float(mae.asnumpy())}
