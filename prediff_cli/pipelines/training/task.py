"""What a trainer defines: its network, its loss (through `TrainStep`s) and how a batch becomes loss inputs.

The `Trainer` owns everything else (data positions, randomness, logging, validation, checkpoints, signals).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np
from mindspore import nn

from prediff.config import Config, TrainConfig
from prediff.config.schema import BLOCKWISE_RECOMPUTE

from .lr_schedule import lr_table
from .train_step import StepDropout, TrainStep


#: the `recompute` level that differentiates the UNet block by block (`blockwise.BlockwiseGradient`)
BLOCKWISE = BLOCKWISE_RECOMPUTE

#: component → the config section with its trainer's settings
SECTIONS = {"vae": "train_vae", "unet": "train_diffusion", "align": "train_align"}


def train_section(config: Config, component: str) -> TrainConfig:
    """The trainer settings of `component` ("vae", "unet" or "align") in `config`."""
    return getattr(config, SECTIONS[component])


def reducer(factory: Optional[Callable], params) -> Optional[nn.Cell]:
    """A data-parallel gradient reducer for `params` (None when training in one process)."""
    return None if factory is None else factory(list(params))


def optimizer_settings(section: TrainConfig, total_steps: int, accum_steps: int) -> Dict[str, Any]:
    """The `TrainStep` keyword arguments a trainer's config section sets: the learning rate of each of the
    `total_steps` optimizer steps (`lr_schedule`), AdamW's betas and weight decay, the global-norm clip and the
    number of micro-batches per optimizer step."""
    return dict(lr_schedule=lr_table(total_steps, section.lr, section.warmup_ratio, section.warmup_min_lr_ratio,
                                     section.min_lr_ratio),
                betas=section.betas, weight_decay=section.weight_decay, grad_clip=section.grad_clip,
                accum_steps=accum_steps)


class TrainingTask:
    """Base class of the three trainers. Subclasses set `component`, `net`, `model_kwargs`, `train_steps`
    and implement `optimizer_step` and `validation_metrics`."""

    component: str
    net: nn.Cell
    model_kwargs: dict
    train_steps: List[TrainStep]
    #: name of the validation metric that selects best.ckpt (lower is better)
    monitor: str = "val_loss"
    #: the keyed dropout of `net` (None: no dropout), shared by its TrainSteps; the Trainer picks each step's keys
    dropout: Optional[StepDropout] = None

    def optimizer_step(self, step: int, batches: List[np.ndarray], rng: np.random.Generator) -> Dict[str, float]:
        """One optimizer step on `batches` (one NTHWC float32 array per micro-batch); `rng` is this step's own
        generator. Returns host floats including `loss`, `lr`, `grad_norm`."""
        raise NotImplementedError

    def validation_metrics(self, batch: np.ndarray, rng: np.random.Generator) -> Dict[str, float]:
        """Loss terms on one validation micro-batch (no parameter update)."""
        raise NotImplementedError

    def set_train(self, mode: bool) -> None:
        self.net.set_train(mode)

    # optimizer moments and other trained tensors (discriminator, learned log-variance) ------------------------
    def state(self, live: bool = False) -> Dict[str, np.ndarray]:
        """Every train step's optimizer state (`live`: the parameters, not NumPy copies; see TrainStep.state)."""
        out = {}
        for ts in self.train_steps:
            out.update({f"{ts.name}.{k}": v for k, v in ts.state(live).items()})
        return out

    def load_state(self, state: Dict[str, np.ndarray]) -> None:
        for ts in self.train_steps:
            prefix = ts.name + "."
            ts.load_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def aux_state(self, live: bool = False) -> Dict[str, np.ndarray]:
        return {}

    def load_aux_state(self, state: Dict[str, np.ndarray]) -> None:
        if state:
            raise ValueError(f"unexpected auxiliary tensors in the checkpoint: {', '.join(sorted(state)[:3])}")

    def step_count(self) -> int:
        return self.train_steps[0].step
