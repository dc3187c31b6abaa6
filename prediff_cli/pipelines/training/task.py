"""What a trainer defines: its network, its loss (through `TrainStep`s) and how a batch becomes loss inputs.

The `Trainer` owns everything else (data positions, randomness, logging, validation, checkpoints, signals).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np
from mindspore import nn

from .train_step import StepDropout, TrainStep


def reducer(factory: Optional[Callable], params) -> Optional[nn.Cell]:
    """A data-parallel gradient reducer for `params` (None when training in one process)."""
    return None if factory is None else factory(list(params))


class TrainingTask:
    """Base class of the three trainers. Subclasses set `component`, `net`, `model_kwargs`, `train_steps`
    and implement `optimizer_step` and `validation_metrics`."""

    component: str
    net: nn.Cell
    model_kwargs: dict
    train_steps: List[TrainStep]
    #: name of the validation metric that selects best.ckpt (lower is better)
    monitor: str = "val_loss"
    #: extra provenance stored in every checkpoint's meta (e.g. the frozen VAE's path and hash)
    extra_meta: Dict[str, object] = {}
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
    def state(self) -> Dict[str, np.ndarray]:
        out = {}
        for ts in self.train_steps:
            out.update({f"{ts.name}.{k}": v for k, v in ts.state().items()})
        return out

    def load_state(self, state: Dict[str, np.ndarray]) -> None:
        for ts in self.train_steps:
            prefix = ts.name + "."
            ts.load_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def aux_state(self) -> Dict[str, np.ndarray]:
        return {}

    def load_aux_state(self, state: Dict[str, np.ndarray]) -> None:
        if state:
            raise ValueError(f"unexpected auxiliary tensors in the checkpoint: {', '.join(sorted(state)[:3])}")

    def step_count(self) -> int:
        return self.train_steps[0].step
