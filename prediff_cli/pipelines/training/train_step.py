"""The one train-step object: value_and_grad, gradient accumulation, global-norm clipping, AdamW.

Every trainer hands it a *loss cell* — `construct(*inputs) -> (loss, aux_1, ..., aux_k)` with scalar tensors —
and the parameters that loss should train. Everything else (differentiation, accumulation up to the total batch,
data-parallel gradient averaging, clipping, the optimizer and its learning-rate schedule) lives here, compiled
with `ms.jit` so one optimizer step is one or two graph launches.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from prediff_cli.pipelines.compile import compiled


class TrainStep:
    """Optimizes `params` on the scalar loss returned first by `loss_cell`.

    Further outputs of the loss cell are not differentiated: scalar ones are averaged over the micro-batches
    and returned as floats (`aux`), larger ones are handed back as tensors, per micro-batch (`tensors`).

    `lr_schedule` holds the learning rate of every optimizer step (see `lr_schedule.lr_table`); the optimizer
    indexes it with its own step counter, which is saved with the optimizer state, so a resumed run continues
    the schedule where it stopped. `accum_steps` micro-batches make one optimizer step (their gradients are
    averaged). `grad_reducer` (e.g. `nn.DistributedGradReducer`) averages gradients across data-parallel ranks.
    """

    def __init__(self, loss_cell: nn.Cell, params: Sequence[Parameter], *, lr_schedule: np.ndarray,
                 betas=(0.9, 0.999), weight_decay: float = 0.0, eps: float = 1e-8, grad_clip: float = 1.0,
                 accum_steps: int = 1, grad_reducer: Optional[nn.Cell] = None, name: str = "opt"):
        self.loss_cell = loss_cell
        self.name = name
        self.accum_steps = int(accum_steps)
        self.params = ParameterTuple(list(params))
        self.optimizer = nn.AdamWeightDecay(self.params, learning_rate=Tensor(np.asarray(lr_schedule, np.float32)),
                                            beta1=float(betas[0]), beta2=float(betas[1]), eps=eps,
                                            weight_decay=float(weight_decay))
        self._lr_schedule = np.asarray(lr_schedule, np.float32)
        clip = float(grad_clip)
        optimizer, reducer, cell = self.optimizer, grad_reducer, loss_cell

        def forward(*inputs):
            return cell(*inputs)

        grad_fn = ms.value_and_grad(forward, None, self.params, has_aux=True)

        def finish(grads):
            # Average across ranks first, so every rank clips and steps with identical gradients.
            if reducer is not None:
                grads = reducer(grads)
            norm = ops.sqrt(ops.addn([ops.reduce_sum(ops.square(g)) for g in grads]))
            if clip > 0:
                grads = ops.clip_by_global_norm(grads, clip)
            optimizer(grads)
            return norm

        if self.accum_steps == 1:
            @compiled
            def fused(*inputs):
                outputs, grads = grad_fn(*inputs)
                norm = finish(grads)
                return outputs, norm

            self._fused = fused
        else:
            self.accum = ParameterTuple([Parameter(ops.zeros_like(p), name=f"accum.{name}.{i}", requires_grad=False)
                                         for i, p in enumerate(self.params)])
            accum, scale = self.accum, 1.0 / self.accum_steps

            @compiled
            def accumulate(*inputs):
                outputs, grads = grad_fn(*inputs)
                for a, g in zip(accum, grads):
                    ops.assign_add(a, g * scale)
                return outputs

            @compiled
            def apply():
                grads = tuple(a * 1.0 for a in accum)
                norm = finish(grads)
                for a in accum:
                    ops.assign(a, ops.zeros_like(a))
                return norm

            self._accumulate, self._apply = accumulate, apply

    # ------------------------------------------------------------------------------------------------------------
    def __call__(self, micro_batches: Sequence[Sequence[Tensor]]) -> Dict[str, object]:
        """One optimizer step over `accum_steps` micro-batches. Returns the mean loss, the mean of every scalar
        aux output, the non-scalar outputs of each micro-batch, the pre-clipping gradient norm and the learning
        rate that was used."""
        if len(micro_batches) != self.accum_steps:
            raise ValueError(f"{self.name}: expected {self.accum_steps} micro-batches, got {len(micro_batches)}")
        lr = self.current_lr()
        if self.accum_steps == 1:
            outputs, norm = self._fused(*micro_batches[0])
            collected = [outputs]
        else:
            collected = [self._accumulate(*inputs) for inputs in micro_batches]
            norm = self._apply()
        scalar = [i for i, o in enumerate(collected[0]) if o.size == 1]
        values = np.array([[float(out[i].asnumpy()) for i in scalar] for out in collected],
                          dtype=np.float64).mean(axis=0)
        tensors = [tuple(o for o in out if o.size != 1) for out in collected]
        return {"loss": float(values[0]), "aux": [float(v) for v in values[1:]], "tensors": tensors,
                "grad_norm": float(norm.asnumpy()), "lr": lr}

    def current_lr(self) -> float:
        step = int(self.optimizer.global_step.asnumpy().reshape(-1)[0])
        return float(self._lr_schedule[min(step, len(self._lr_schedule) - 1)])

    # ------------------------------------------------------------------------------------------------------------
    def state(self) -> Dict[str, np.ndarray]:
        """Optimizer moments and step counter, keyed by position (stable for a given parameter list)."""
        out = {"global_step": self.optimizer.global_step.asnumpy()}
        for i, (m, v) in enumerate(zip(self.optimizer.moments1, self.optimizer.moments2)):
            out[f"m.{i}"] = m.asnumpy()
            out[f"v.{i}"] = v.asnumpy()
        return out

    def load_state(self, state: Dict[str, np.ndarray]) -> None:
        moments = list(zip(self.optimizer.moments1, self.optimizer.moments2))
        expected = {"global_step"} | {f"{k}.{i}" for i in range(len(moments)) for k in ("m", "v")}
        if set(state) != expected:
            raise ValueError(f"{self.name}: optimizer state does not match the parameters being trained")
        self.optimizer.global_step.set_data(Tensor(state["global_step"]))
        for i, (m, v) in enumerate(moments):
            m.set_data(Tensor(state[f"m.{i}"]))
            v.set_data(Tensor(state[f"v.{i}"]))

    @property
    def step(self) -> int:
        return int(self.optimizer.global_step.asnumpy().reshape(-1)[0])


def trainable(params: Sequence[Parameter]) -> List[Parameter]:
    return [p for p in params if p.requires_grad]
