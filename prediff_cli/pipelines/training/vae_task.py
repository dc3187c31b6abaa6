"""train-vae: the frame VAE with L1 + KL + hinge PatchGAN (docs/training.md).

Generator loss (per micro-batch of frames x, sampled posterior):
    nll = Σ|x − x̂| / B,   kl = Σ KL / B,   g = −mean(D(x̂))
    loss = nll + kl_weight·kl + d_w·disc_factor·g,
    d_w = clamp(‖∇_W nll‖ / (‖∇_W g‖ + 1e-4), 0, 1e4)·disc_weight, W = decoder.conv_out.weight (adaptive weight)
Discriminator loss: disc_factor·½·(mean relu(1 − D(x)) + mean relu(1 + D(x̂))), x̂ detached.
disc_factor = 1 from `disc_start` on, else 0 (the discriminator is not stepped before then: with a zero loss and
no weight decay its Adam update would be zero anyway). The official NLL's learnable log-variance is never
optimised (official `contperceptual.py`), so it is the plain L1 sum here. No LPIPS (its weight is 0 for 1-channel data).
"""
from __future__ import annotations

from typing import Dict, List

import mindspore as ms
import numpy as np
from mindspore import ParameterTuple, Tensor, nn, ops

from prediff.compile import compiled

from prediff.config import Config
from prediff.io.checkpoint import net_weights

from .task import TrainingTask, optimizer_settings, reducer as _reducer
from .train_step import TrainStep


def _nchw(batch: np.ndarray) -> np.ndarray:
    """Frames (B, 1, H, W, C) NTHWC or (B, H, W, C) → (B, C, H, W)."""
    frames = batch.reshape((-1,) + batch.shape[-3:])
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2))


class VAEGeneratorLoss(nn.Cell):
    """`construct(x, noise, disc_factor, d_weight) -> (loss, nll, kl, g, reconstruction)`."""

    def __init__(self, vae: nn.Cell, disc: nn.Cell, kl_weight: float, with_disc: bool = True):
        super().__init__()
        from prediff_models.vae import posterior

        self.vae, self.disc = vae, disc
        self.kl_weight = float(kl_weight)
        self._kl = posterior.kl
        # a run that ends before disc_start never needs D(x̂): leaving it out of the graph saves its forward and
        # backward pass (at 128 × 128 the PatchGAN costs more than a small VAE), g is then reported as 0
        self.with_disc = bool(with_disc)

    def construct(self, x, noise, disc_factor, d_weight):
        rec, moments = self.vae(x, noise)
        batch = x.shape[0]
        nll = ops.sum(ops.abs(x - rec)) / batch
        kl = ops.sum(self._kl(moments)) / batch
        g = -ops.mean(self.disc(rec)) if self.with_disc else ops.zeros((), nll.dtype)
        loss = nll + self.kl_weight * kl + d_weight * disc_factor * g
        return loss, nll, kl, g, ops.stop_gradient(rec)


class VAEDiscriminatorLoss(nn.Cell):
    """`construct(x, reconstruction, disc_factor) -> (loss, mean logit real, mean logit fake)`."""

    def __init__(self, disc: nn.Cell):
        super().__init__()
        self.disc = disc

    def construct(self, x, rec, disc_factor):
        real = self.disc(x)
        fake = self.disc(ops.stop_gradient(rec))
        loss = disc_factor * 0.5 * (ops.mean(ops.relu(1.0 - real)) + ops.mean(ops.relu(1.0 + fake)))
        return loss, ops.mean(real), ops.mean(fake)


class VAETask(TrainingTask):
    component = "vae"
    monitor = "val_loss"

    def __init__(self, config: Config, vae: nn.Cell, *, accum_steps: int, total_steps: int,
                 reducer_factory=None):
        from prediff_models.vae import NLayerDiscriminator, posterior

        tr = config.train_vae
        self.net = vae
        self.model_kwargs = config.model_kwargs("vae")
        self.disc = NLayerDiscriminator(input_nc=config.vae.out_channels)
        self.disc_start = tr.disc_start
        self.kl_weight = tr.kl_weight
        self.disc_weight = tr.disc_weight
        self.latent_channels = config.vae.latent_channels
        self.downscale = 2 ** (len(config.vae.block_out_channels) - 1)
        common = optimizer_settings(tr, total_steps, accum_steps)
        lrs = common.pop("lr_schedule")
        self.gen_loss = VAEGeneratorLoss(vae, self.disc, tr.kl_weight, with_disc=tr.disc_start < total_steps)
        self.disc_loss = VAEDiscriminatorLoss(self.disc)
        self.train_steps = [
            TrainStep(self.gen_loss, list(vae.trainable_params()), lr_schedule=lrs,
                      grad_reducer=_reducer(reducer_factory, vae.trainable_params()), name="vae", **common),
            # the discriminator starts at disc_start; its own step counter indexes the tail of the schedule
            TrainStep(self.disc_loss, list(self.disc.trainable_params()),
                      lr_schedule=lrs[min(self.disc_start, total_steps - 1):],
                      grad_reducer=_reducer(reducer_factory, self.disc.trainable_params()), name="disc", **common),
        ]
        self._adaptive = self._adaptive_weight_fn(vae, self.disc, posterior)

    @staticmethod
    def _adaptive_weight_fn(vae, disc, posterior):
        last = ParameterTuple([vae.decoder.conv_out.weight])

        def nll_fn(x, noise):
            rec, _ = vae(x, noise)
            return ops.sum(ops.abs(x - rec)) / x.shape[0]

        def g_fn(x, noise):
            rec, _ = vae(x, noise)
            return -ops.mean(disc(rec))

        grad_nll = ms.grad(nll_fn, None, last)
        grad_g = ms.grad(g_fn, None, last)

        @compiled
        def adaptive(x, noise):
            a = grad_nll(x, noise)[0]
            b = grad_g(x, noise)[0]
            ratio = ops.sqrt(ops.sum(a * a)) / (ops.sqrt(ops.sum(b * b)) + 1e-4)
            return ops.clamp(ratio, 0.0, 1e4)

        return adaptive

    def _noise(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        b, _, h, w = x.shape
        return rng.standard_normal((b, self.latent_channels, h // self.downscale, w // self.downscale),
                                   dtype=np.float32)

    def set_train(self, mode: bool) -> None:
        self.net.set_train(mode)
        self.disc.set_train(mode)

    def optimizer_step(self, step: int, batches: List[np.ndarray], rng: np.random.Generator) -> Dict[str, float]:
        use_disc = step >= self.disc_start
        factor = Tensor(1.0 if use_disc else 0.0, ms.float32)
        frames = [_nchw(b) for b in batches]
        inputs = []
        for x in frames:
            xt, noise = Tensor(x), Tensor(self._noise(x, rng))
            d_weight = self._adaptive(xt, noise) * self.disc_weight if use_disc else Tensor(0.0, ms.float32)
            inputs.append((xt, noise, factor, d_weight))
        gen = self.train_steps[0](inputs)
        out = {"loss": gen["loss"], "nll": gen["aux"][0], "kl": gen["aux"][1], "g_loss": gen["aux"][2],
               "lr": gen["lr"], "grad_norm": gen["grad_norm"]}
        if use_disc:
            disc = self.train_steps[1]([(x, rec[0], factor) for (x, *_), rec in zip(inputs, gen["tensors"])])
            out.update(d_loss=disc["loss"], logits_real=disc["aux"][0], logits_fake=disc["aux"][1])
        return out

    def validation_metrics(self, batch: np.ndarray, rng: np.random.Generator) -> Dict[str, float]:
        from prediff_models.vae import posterior

        x = Tensor(_nchw(batch))
        rec, moments = self.net(x)  # posterior mean: the deterministic reconstruction
        b = x.shape[0]
        nll = float(ops.sum(ops.abs(x - rec)).asnumpy()) / b
        kl = float(ops.sum(posterior.kl(moments)).asnumpy()) / b
        mae = float(ops.mean(ops.abs(x - rec)).asnumpy())
        return {"val_loss": nll + self.kl_weight * kl, "val_rec_mae": mae, "val_kl": kl}

    def aux_state(self, live: bool = False) -> Dict[str, np.ndarray]:
        return {f"disc.{k}": v for k, v in net_weights(self.disc, live).items()}

    def load_aux_state(self, state: Dict[str, np.ndarray]) -> None:
        from prediff.io.checkpoint import load_weights

        load_weights(self.disc, {k[len("disc."):]: v for k, v in state.items() if k.startswith("disc.")},
                     source="the checkpoint's discriminator")
