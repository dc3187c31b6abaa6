"""train-align: the knowledge-alignment network on a frozen VAE (docs/training.md).

Target = per-frame mean intensity of the target frames in pixel space on 0–1, (B, T_out, 1). Input = the noisy
latent z_t of a posterior sample of the target frames at t ~ U{0..T-1}. Loss = MSE (MAE is logged too).
"""
from __future__ import annotations

from typing import Dict

import numpy as np
from mindspore import Tensor, nn, ops

from prediff.config import Config
from prediff.pipelines.latents import posterior_sample

from .encoded_batches import EncodedBatch, average_intensity
from .latent_task import LatentTask


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


class AlignTask(LatentTask):
    component = "align"
    aux_names = ("mae",)

    def make_loss(self, net: nn.Cell, schedule, config: Config) -> nn.Cell:
        return AlignmentLoss(net, schedule)

    def _inputs(self, batch, rng: np.random.Generator):
        if isinstance(batch, EncodedBatch):
            moments = Tensor(np.ascontiguousarray(batch.moments[:, self.in_len:]))
            target = batch.intensity[:, self.in_len:]
        else:
            target_frames = np.ascontiguousarray(batch[:, self.in_len:])
            moments, target = self.encode(Tensor(target_frames)), average_intensity(target_frames)
        shape = moments.shape[:-1] + (moments.shape[-1] // 2,)
        z0 = posterior_sample(moments, Tensor(rng.standard_normal(shape, dtype=np.float32))) * self.scale_factor
        t = Tensor(rng.integers(0, self.timesteps, size=(len(batch),)).astype(np.int32))
        noise = Tensor(rng.standard_normal(shape, dtype=np.float32))
        return z0, t, noise, Tensor(np.ascontiguousarray(target))

    def validation_metrics(self, batch: np.ndarray, rng: np.random.Generator) -> Dict[str, float]:
        mse, mae = self.loss_cell(*self._inputs(batch, rng))
        return {"val_loss": float(mse.asnumpy()), "val_mae": float(mae.asnumpy())}
