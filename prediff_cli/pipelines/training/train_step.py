"""The one train-step object: value_and_grad, gradient accumulation, global-norm clipping, AdamW.

Every trainer hands it a *loss cell* — `construct(*inputs) -> (loss, aux_1, ..., aux_k)` with scalar tensors —
and the parameters that loss should train. Everything else (differentiation, accumulation up to the total batch,
data-parallel gradient averaging, clipping, the optimizer and its learning-rate schedule) lives here, compiled
with `ms.jit` so one optimizer step is one or two graph launches.

`StepDropout` makes the networks' dropout masks a pure function of (seed, step, rank, micro-batch), so that a
resumed run repeats the uninterrupted one exactly (see its docstring for why MindSpore's own dropout cannot).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from prediff.compile import compiled
from prediff_models.keyed_dropout import KeyedDropout
from prediff_models.kernels import SquareSum


_hyper_map = ops.HyperMap()


def _scaled(scale, g):
    return g * scale


def global_norm_and_clip(grads, clip: float, square_sum: Callable):
    """(the gradients' global L2 norm, the gradients scaled by clip / max(norm, clip)), with one pass over them for
    the norm (`kernels.SquareSum`): `ops.clip_by_global_norm` computes the norm again, and MindSpore's own square +
    reduce_sum took 0.59 s of the paper-size UNet's 1.3 s optimizer step. `clip` ≤ 0: the gradients unchanged.
    Same values as `ops.clip_by_global_norm` (tested). `square_sum`: a `SquareSum` cell, built by the caller once
    the device is set (it falls back to MindSpore's ops by itself)."""
    norm = ops.sqrt(ops.addn([square_sum(g) for g in grads]))
    if clip <= 0:
        return norm, grads
    clip_t = ops.scalar_to_tensor(clip, ms.float32)
    scale = clip_t / ops.maximum(norm, clip_t)
    return norm, _hyper_map(ops.partial(_scaled, scale), grads)


class TrainStep:
    """Optimizes `params` on the scalar loss returned first by `loss_cell`.

    Further outputs of the loss cell are not differentiated: scalar ones are averaged over the micro-batches
    and returned as floats (`aux`), larger ones are handed back as tensors, per micro-batch (`tensors`).

    `lr_schedule` holds the learning rate of every optimizer step (see `lr_schedule.lr_table`); the optimizer
    indexes it with its own step counter, which is saved with the optimizer state, so a resumed run continues
    the schedule where it stopped. `accum_steps` micro-batches make one optimizer step (their gradients are
    averaged). `grad_reducer` (e.g. `nn.DistributedGradReducer`) averages gradients across data-parallel ranks.
    `dropout` (a `StepDropout` installed on the trained network) keys each micro-batch's dropout masks.
    `gradient` replaces the one compiled `value_and_grad` of `loss_cell`: a host-side function `(key?, *inputs) ->
    (outputs, grads)` with grads in the order of `params` (e.g. `BlockwiseGradient`, which runs many small graphs);
    the micro-batches' gradients are then summed on the host and one compiled graph clips and steps.
    """

    def __init__(self, loss_cell: nn.Cell, params: Sequence[Parameter], *, lr_schedule: np.ndarray,
                 betas=(0.9, 0.999), weight_decay: float = 0.0, eps: float = 1e-8, grad_clip: float = 1.0,
                 accum_steps: int = 1, grad_reducer: Optional[nn.Cell] = None, name: str = "opt",
                 dropout: Optional["StepDropout"] = None, gradient: Optional[Callable] = None):
        self.loss_cell = loss_cell
        self.name = name
        self.dropout = dropout
        self.accum_steps = int(accum_steps)
        self.params = ParameterTuple(list(params))
        self.optimizer = nn.AdamWeightDecay(self.params, learning_rate=Tensor(np.asarray(lr_schedule, np.float32)),
                                            beta1=float(betas[0]), beta2=float(betas[1]), eps=eps,
                                            weight_decay=float(weight_decay))
        self._lr_schedule = np.asarray(lr_schedule, np.float32)
        clip = float(grad_clip)
        optimizer, reducer, cell = self.optimizer, grad_reducer, loss_cell
        square_sum = SquareSum()

        def forward(*inputs):
            return cell(*inputs)

        grad_fn = ms.value_and_grad(forward, None, self.params, has_aux=True)
        keyed = keyed_by(dropout)

        def finish(grads):
            # Average across ranks first, so every rank clips and steps with identical gradients.
            if reducer is not None:
                grads = reducer(grads)
            norm, grads = global_norm_and_clip(grads, clip, square_sum)
            optimizer(grads)
            return norm

        self._gradient = gradient
        if gradient is not None:
            # the graph takes every gradient as one tuple input; MindSpore's parser recurses once per element (its
            # default limit of 1000 calls fails at the paper-size UNet's 640 tensors)
            _raise_recursion_limit(8 * len(self.params) + 1000)

            @compiled
            def apply_given(grads):
                return finish(grads)

            self._apply_given = apply_given
        elif self.accum_steps == 1:
            def fused(*inputs):
                outputs, grads = grad_fn(*inputs)
                norm = finish(grads)
                return outputs, norm

            self._fused = compiled(keyed(fused))
        else:
            self.accum = ParameterTuple([Parameter(ops.zeros_like(p), name=f"accum.{name}.{i}", requires_grad=False)
                                         for i, p in enumerate(self.params)])
            accum, scale = self.accum, 1.0 / self.accum_steps

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

            self._accumulate, self._apply = compiled(keyed(accumulate)), apply

    # ------------------------------------------------------------------------------------------------------------
    def __call__(self, micro_batches: Sequence[Sequence[Tensor]]) -> Dict[str, object]:
        """One optimizer step over `accum_steps` micro-batches. Returns the mean loss, the mean of every scalar
        aux output, the non-scalar outputs of each micro-batch, the pre-clipping gradient norm and the learning
        rate that was used."""
        if len(micro_batches) != self.accum_steps:
            raise ValueError(f"{self.name}: expected {self.accum_steps} micro-batches, got {len(micro_batches)}")
        lr = self.current_lr()
        # with keyed dropout every graph launch takes its micro-batch's dropout key as a leading input
        keys = [(self.dropout.key(i),) if self.dropout is not None else () for i in range(self.accum_steps)]
        if self._gradient is not None:
            collected, total = [], None
            for key, inputs in zip(keys, micro_batches):
                outputs, grads = self._gradient(*key, *inputs)
                collected.append(outputs)
                total = list(grads) if total is None else [a + g for a, g in zip(total, grads)]
            if self.accum_steps > 1:
                total = [g * (1.0 / self.accum_steps) for g in total]
            # mutable: a plain tuple of tensors is a compile-time constant to ms.jit, recompiled for every new value
            norm = self._apply_given(ms.mutable(tuple(total)))
        elif self.accum_steps == 1:
            outputs, norm = self._fused(*keys[0], *micro_batches[0])
            collected = [outputs]
        else:
            collected = [self._accumulate(*key, *inputs) for key, inputs in zip(keys, micro_batches)]
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
    def state(self, live: bool = False) -> Dict[str, np.ndarray]:
        """Optimizer moments and step counter, keyed by position (stable for a given parameter list); NumPy copies,
        or with `live` the parameters themselves."""
        host = (lambda p: p) if live else (lambda p: p.asnumpy())
        out = {"global_step": host(self.optimizer.global_step)}
        for i, (m, v) in enumerate(zip(self.optimizer.moments1, self.optimizer.moments2)):
            out[f"m.{i}"] = host(m)
            out[f"v.{i}"] = host(v)
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


_RECURSION_LIMIT = [1000]  # MindSpore's default; it offers no getter


def _raise_recursion_limit(limit: int) -> None:
    """Raise (never lower) MindSpore's graph-parser call-depth limit."""
    if limit > _RECURSION_LIMIT[0]:
        ms.set_recursion_limit(limit)
        _RECURSION_LIMIT[0] = limit


def unkeyed(fn):
    """Without keyed dropout a step function takes its inputs unchanged."""
    return fn


def keyed_by(dropout: Optional["StepDropout"]) -> Callable:
    """The wrapper that makes a step function take `dropout`'s key as its leading input (`unkeyed` without one)."""
    return unkeyed if dropout is None else dropout.keyed


# ----------------------------------------------------------------------------------------------------------------
# dropout keyed by (seed, step)

_DROPOUT_STREAM = 0x0D0D  # leading word of the dropout keys' SeedSequence, apart from the noise generators'
_U32 = np.uint32


class StepDropout:
    """Dropout masks as a pure function of (seed, step, rank, micro-batch, layer, element).

    MindSpore's `nn.Dropout` draws from a stream held inside each compiled dropout kernel: seeded when the kernel
    is built, advanced on every call, with no way to read, set or rewind it (on CPU, MindSpore 2.10 has no
    generator-driven random kernels either: `DropoutExt`, `RandExt`, `BernoulliExt` are not implemented). A resumed
    run builds fresh kernels whose streams restart, so it would draw the masks of steps 0, 1, ... again.

    `install(net)` therefore swaps the primitive inside every active `nn.Dropout` of `net` for `KeyedDropout`
    (the cells, their `p` and their train/eval switch stay as they are). Each launch of a `TrainStep` built with
    this object first assigns its micro-batch's key; `begin_step(seed, step, rank)` chooses the keys.
    """

    def __init__(self, param: Parameter, layers: int):
        self.param = param
        self.layers = layers
        self._base = (0, 0, 0)

    @classmethod
    def install(cls, net: nn.Cell) -> Optional["StepDropout"]:
        """Key every dropout with p > 0 inside `net`; None when `net` has none (nothing is changed)."""
        param = Parameter(Tensor(_U32(0)), name="dropout_key", requires_grad=False)
        cells = [cell for _, cell in net.cells_and_names() if isinstance(cell, nn.Dropout)]
        layers = 0
        for cell in cells:
            if isinstance(cell.dropout, KeyedDropout):
                raise ValueError("StepDropout.install: this network's dropout is already keyed")
            p = cell.p if cell.p is not None else 1.0 - cell.keep_prob
            if p > 0:
                # the enumeration order of cells_and_names is fixed by the architecture, so a layer's number is
                # the same in every process that builds the same network
                cell.dropout = KeyedDropout(p, layers, param)
                layers += 1
        return cls(param, layers) if layers else None

    def begin_step(self, seed: int, step: int, rank: int = 0) -> None:
        """Select the keys of optimizer step `step` (0-based) on data-parallel rank `rank`."""
        self._base = (int(seed), int(step), int(rank))

    def key(self, micro_batch: int) -> Tensor:
        """The uint32 key of micro-batch `micro_batch` of the current step."""
        seed, step, rank = self._base
        words = np.random.SeedSequence([_DROPOUT_STREAM, seed, step, rank, int(micro_batch)]).generate_state(1, _U32)
        return Tensor(words[0])

    def keyed(self, fn):
        """`fn(*inputs)` → `g(key, *inputs)`: assigns `key` to the dropout key, then runs `fn` (in one graph, the
        assignment is ordered before the dropout reads it)."""
        # The key travels as a graph input and is assigned inside the graph: an ms.jit graph does not see a
        # Parameter changed from the host (set_data, or even ops.assign run eagerly) after it was compiled.
        param = self.param

        def with_key(key, *inputs):
            ops.assign(param, key)
            return fn(*inputs)

        return with_key
