"""What the two latent trainers (train-diffusion, train-align) share: a frozen VAE encoder, the noise schedule and
one `TrainStep` over the trained network. Each subclass defines only its loss cell and how a batch becomes that
loss's inputs (mindone's split: one train-step object owns value_and_grad, clipping and the optimizer; a trainer
owns its loss).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
from mindspore import Parameter, nn

from prediff.config import Config
from prediff.pipelines.latents import frozen, jit_encoder

from .encoded_batches import EncodedBatch
from .task import BLOCKWISE, TrainingTask, optimizer_settings, reducer, train_section
from .train_step import StepDropout, TrainStep


class LatentTask(TrainingTask):
    """A trainer of a network on latents of a frozen VAE. Subclasses set `component` and `aux_names` and implement
    `make_loss`, `_inputs` and `validation_metrics`."""

    #: names under which the loss cell's outputs after the loss are logged at each step
    aux_names: Tuple[str, ...] = ()

    def __init__(self, config: Config, net: nn.Cell, vae: nn.Cell, *, accum_steps: int, total_steps: int,
                 reducer_factory=None):
        from prediff_models.diffusion import make_schedule

        d = config.diffusion
        self.net = net
        self.model_kwargs = config.model_kwargs(self.component)
        self.in_len = config.data.in_len
        self.timesteps = d.timesteps
        self.scale_factor = d.scale_factor
        self.encode = jit_encoder(frozen(vae))
        schedule = make_schedule(d.timesteps, d.beta_schedule, d.linear_start, d.linear_end, d.cosine_s)
        self.loss_cell = self.make_loss(net, schedule, config)
        params = self.trained_params()
        self.dropout = StepDropout.install(net)  # masks keyed by (seed, step): exact resume
        self.section = section = train_section(config, self.component)
        settings = optimizer_settings(section, total_steps, accum_steps)
        gradient = self.blockwise_gradient(params) if section.recompute == BLOCKWISE else None
        self.train_steps = [TrainStep(self.loss_cell, params, grad_reducer=reducer(reducer_factory, params),
                                      dropout=self.dropout, name=self.component, gradient=gradient, **settings)]

    def make_loss(self, net: nn.Cell, schedule, config: Config) -> nn.Cell:
        """The loss cell: `construct(*self._inputs(batch, rng)) -> (loss, *aux)` with scalar outputs."""
        raise NotImplementedError

    def blockwise_gradient(self, params: List[Parameter]):
        """The loss's gradient one network block at a time (`recompute: 3`), for trainers whose network has a plan."""
        raise ValueError(f"recompute {BLOCKWISE} (per-block gradient graphs) is available for train_diffusion only")

    def trained_params(self) -> List[Parameter]:
        """What the optimizer updates, in a fixed order (the optimizer state in checkpoints is keyed by position)."""
        return list(self.net.trainable_params())

    def _inputs(self, batch, rng: np.random.Generator) -> Sequence:
        """The loss cell's inputs for one micro-batch — NTHWC pixels on 0–1, or an `EncodedBatch` from the latent
        cache — drawing noise from `rng` (the same draws either way)."""
        raise NotImplementedError

    def optimizer_step(self, step: int, batches: List[np.ndarray], rng: np.random.Generator) -> Dict[str, float]:
        out = self.train_steps[0]([self._inputs(b, rng) for b in batches])
        metrics = {"loss": out["loss"], **dict(zip(self.aux_names, out["aux"])), "lr": out["lr"],
                   "grad_norm": out["grad_norm"]}
        if batches and isinstance(batches[0], EncodedBatch):  # served by the latent cache: the share it already had
            metrics["cached"] = sum(b.cached for b in batches) / sum(len(b) for b in batches)
        return metrics
