"""train-diffusion: the latent Earthformer-UNet on a frozen VAE (docs/training.md).

Per micro-batch: context latents = posterior *mean* of the 7 context frames; target latents = a posterior
*sample* of the 6 target frames (× scale_factor); t ~ U{0..T-1}, ε ~ N(0, I) drawn on the host from the step's
generator; loss = ε-MSE, optionally weighted by a learned per-timestep log-variance (official `p_losses`).
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from prediff.config import Config
from prediff.pipelines.latents import posterior_sample, split_moments

from .encoded_batches import EncodedBatch
from .latent_task import LatentTask


class LatentDiffusionLoss(nn.Cell):
    """`construct(cond, z0, t, noise) -> (loss, simple_mse)`; cond (B,T_in,h,w,L), z0/noise (B,T_out,h,w,L),
    t int32 (B,)."""

    def __init__(self, unet: nn.Cell, schedule, learn_logvar: bool, logvar_init: float):
        super().__init__()
        from prediff_models.diffusion import eps_loss, q_sample

        self.unet = unet
        self.schedule = schedule
        self._q_sample, self._eps_loss = q_sample, eps_loss
        self.learn_logvar = bool(learn_logvar)
        self.logvar = Parameter(Tensor(np.full(len(schedule.betas), logvar_init, np.float32)), name="logvar",
                                requires_grad=self.learn_logvar)

    def construct(self, cond, z0, t, noise):
        zt = self._q_sample(z0, t, noise, self.schedule)
        return self._loss(self.unet(zt, t, cond), t, noise)

    # the same loss in three parts, for the blockwise gradient: stem → the UNet's plan → head
    def stem(self, cond, z0, t, noise):
        """→ (tokens, t_emb) of `unet.embed` on the noised target."""
        return self.unet.embed(self._q_sample(z0, t, noise, self.schedule), t, cond)

    def head(self, x, cond, z0, t, noise):
        """Tokens after the UNet's last level → (loss, simple_mse)."""
        return self._loss(self.unet.head(x), t, noise)

    def _loss(self, eps, t, noise):
        simple = ops.mean(ops.square(eps - noise))
        if self.learn_logvar:
            loss = self._eps_loss(eps, noise, t, self.logvar)
        else:
            loss = simple
        return loss, simple


class DiffusionTask(LatentTask):
    component = "unet"
    aux_names = ("mse",)

    def make_loss(self, net: nn.Cell, schedule, config: Config) -> nn.Cell:
        return LatentDiffusionLoss(net, schedule, config.diffusion.learn_logvar, config.diffusion.logvar_init)

    def blockwise_gradient(self, params: List[Parameter]):
        from .blockwise import BlockwiseGradient
        from .train_step import keyed_by

        loss = self.loss_cell
        return BlockwiseGradient(self.net, loss.stem, loss.head, params, keyed=keyed_by(self.dropout),
                                 has_key=self.dropout is not None, head_params=[loss.logvar],
                                 keep_linear_outputs=self.section.keep_linear_outputs)

    def trained_params(self) -> List[Parameter]:
        # the learned log-variance after the UNet's weights: optimizer state is keyed by position
        extra = [self.loss_cell.logvar] if self.loss_cell.learn_logvar else []
        return list(self.net.trainable_params()) + extra

    def _inputs(self, batch, rng: np.random.Generator):
        moments = Tensor(batch.moments) if isinstance(batch, EncodedBatch) else self.encode(Tensor(batch))
        mean, _ = split_moments(moments)
        cond = mean[:, :self.in_len]
        post_noise = Tensor(rng.standard_normal(mean[:, self.in_len:].shape, dtype=np.float32))
        z0 = posterior_sample(moments[:, self.in_len:], post_noise) * self.scale_factor
        b = len(batch)
        t = Tensor(rng.integers(0, self.timesteps, size=(b,)).astype(np.int32))
        noise = Tensor(rng.standard_normal(z0.shape, dtype=np.float32))
        return cond, z0, t, noise

    def validation_metrics(self, batch: np.ndarray, rng: np.random.Generator) -> Dict[str, float]:
        loss, simple = self.loss_cell(*self._inputs(batch, rng))
        return {"val_loss": float(simple.asnumpy()), "val_weighted_loss": float(loss.asnumpy())}

    def aux_state(self, live: bool = False) -> Dict[str, np.ndarray]:
        return {"logvar": self.loss_cell.logvar if live else self.loss_cell.logvar.asnumpy()}

    def load_aux_state(self, state: Dict[str, np.ndarray]) -> None:
        if set(state) != {"logvar"}:
            raise ValueError("the checkpoint's auxiliary tensors are not those of a diffusion run (logvar)")
        self.loss_cell.logvar.set_data(Tensor(state["logvar"]))
