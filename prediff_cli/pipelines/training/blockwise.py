"""The diffusion loss's gradient block by block (`train_diffusion.recompute: 3`): memory of one UNet block at a time.

One compiled graph of the whole loss and its gradient keeps every block's activations until the backward pass
reaches them, and on MindSpore's CPU backend the graph compiler's own memory comes on top: the `sevirlr` UNet
trainer peaked at 21 GB for one sample. Here every UNet block is its own pair of small graphs:

1. forward, without gradients: the stem (`q_sample` + `unet.embed`), then each step of `unet.plan()`, keeping only
   each block's input (one activation per block, the skips, t_emb);
2. the head (`unet.head` + ε-loss) under `value_and_grad`: loss, aux outputs, ∂loss/∂x and its own parameter grads;
3. backward through the plan in reverse: each block's graph recomputes that block's forward from its kept input and
   returns the vector-Jacobian product (∂/∂x, ∂/∂t_emb, ∂/∂its parameters) for the incoming ∂loss/∂x. Skip
   gradients join at the "save" step; t_emb's gradient is summed over all blocks;
4. the stem's graph turns ∂x and ∂t_emb into its parameters' gradients.

`keep_linear_outputs` (config `train_diffusion.keep_linear_outputs`): step 1 also keeps the outputs of every block's
3×3×3 convolutions and linear layers — nine tenths of a block's forward FLOPs — in an activation stash
(`prediff_models.kernels.stash`), and step 3 loads them instead of computing them again; the normalisations,
activations and attention in between are still recomputed (the layers' gradients need their inputs). 780 MB
more at the paper size and micro-batch 1, for about three quarters of the recomputed forward's time.

Recomputation is exact: training dropout draws its masks from a key (`StepDropout`), and each graph assigns the
micro-batch's key before it runs, so the recomputed block sees the masks of the forward pass. The gradients equal
one `value_and_grad` over the whole loss (tested to float rounding).
"""
from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import mindspore as ms
from mindspore import Parameter, ParameterTuple, ops

from prediff.compile import compiled
from prediff_models.kernels.stash import LOAD, STORE, ActivationStash


def _trainable(cells, trained_ids) -> List[Parameter]:
    out, seen = [], set()
    for cell in cells:
        for p in cell.trainable_params():
            if id(p) in trained_ids and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


# closures made by factories: MindSpore's graph parser does not resolve default-argument bindings
def _block_fn(unet, time_block, block):
    def fn(x, t_emb):
        return unet.block(x, t_emb, time_block, block)
    return fn


def _layer_fn(layer):
    def fn(x):
        return layer(x)
    return fn


def _vjp(fn: Callable, params: Sequence[Parameter], n_inputs: int, keyed: Callable):
    """compiled (key?, *inputs, *sens) → ((∂ inputs...), (∂ params...)) of <fn(*inputs), sens>, with fn returning a
    tensor or a tuple of tensors (one sens per output)."""

    def dot(*args):
        inputs, sens = args[:n_inputs], args[n_inputs:]
        out = fn(*inputs)
        out = out if isinstance(out, tuple) else (out,)
        total = ops.sum(out[0] * sens[0])
        for o, s in zip(out[1:], sens[1:]):
            total = total + ops.sum(o * s)
        return total

    positions = tuple(range(n_inputs)) if n_inputs else None
    return compiled(keyed(ms.grad(dot, grad_position=positions, weights=ParameterTuple(list(params)))))


class BlockwiseGradient:
    """`(key?, *inputs) → (outputs, grads)`, like `value_and_grad(loss_cell, None, params, has_aux=True)`.

    `stem(*inputs) → (x, t_emb)` and `head(x, *inputs) → (loss, *aux)` are the parts of the loss before and after
    the UNet's plan; `unet` supplies `plan()`, `run_plan()`, `block()`, `embed_cells()` and `head_cells()`;
    `head_params` are further trained parameters that only the head uses (the learned log-variance); `params` fixes
    the order of the returned gradients.
    `keyed` wraps a function so that it first assigns the dropout key it takes as its leading input (`StepDropout.
    keyed`), or leaves it unchanged (no dropout: then no key is passed).
    """

    def __init__(self, unet, stem: Callable, head: Callable, params: Sequence[Parameter], *, keyed: Callable,
                 has_key: bool, head_params: Sequence[Parameter] = (), keep_linear_outputs: bool = False):
        self.unet = unet
        self.params = list(params)
        self.stashes = []
        self.has_key = has_key
        self._index = {id(p): i for i, p in enumerate(self.params)}
        trained = set(self._index)
        self.steps = []  # (kind, level, forward graph, backward graph, parameters)
        covered = set()
        for kind, level, cells in unet.plan():
            fwd = bwd = None
            ps = _trainable(cells, trained)
            if kind == "block":
                fn = _block_fn(unet, *cells)
                fwd, bwd = compiled(keyed(fn)), _vjp(fn, ps, 2, keyed)
                if keep_linear_outputs:  # the backward graph loads what the forward one stored (see the docstring)
                    stash = ActivationStash(cells)
                    fwd, bwd = stash.bound(STORE, fwd), stash.bound(LOAD, bwd)
                    self.stashes.append(stash)
            elif kind in ("down", "up"):
                fn = _layer_fn(cells[0])
                fwd, bwd = compiled(keyed(fn)), _vjp(fn, ps, 1, keyed)
            covered.update(id(p) for p in ps)
            self.steps.append((kind, level, fwd, bwd, ps))
        self._stem_params = _trainable(unet.embed_cells(), trained)
        self._head_params = _trainable(unet.head_cells(), trained) + [p for p in head_params if id(p) in trained]
        covered.update(id(p) for p in self._stem_params + self._head_params)
        missing = [p.name for p in self.params if id(p) not in covered]
        if missing:
            raise ValueError(f"blockwise gradient: parameters outside every block: {', '.join(missing[:5])}")
        self._stem_fwd = compiled(keyed(stem))
        self._stem_bwd = _stem_vjp(stem, self._stem_params, keyed)
        head_vg = ms.value_and_grad(head, grad_position=0, weights=ParameterTuple(self._head_params), has_aux=True)
        self._head = compiled(keyed(head_vg))

    def __call__(self, *args) -> Tuple[tuple, tuple]:
        key = args[:1] if self.has_key else ()
        inputs = args[1:] if self.has_key else args
        # 1. forward without gradients, keeping each step's input
        x, t_emb = self._stem_fwd(*key, *inputs)

        def run(step, h, emb):  # a step's compiled forward graph
            kind, _, fwd, _, _ = step
            return fwd(*key, h, emb) if kind == "block" else fwd(*key, h)

        x, kept = self.unet.run_plan(x, t_emb, self.steps, run)
        # 2. the head: loss, aux, ∂loss/∂x, its parameters' gradients
        outputs, (dx, head_grads) = self._head(*key, x, *inputs)
        grads: List = [None] * len(self.params)
        self._add(grads, self._head_params, head_grads)
        # 3. backward through the plan; ∂t_emb sums over blocks, a skip's gradient joins where it was saved
        dt, skip_grads = None, {}
        for i in range(len(self.steps) - 1, -1, -1):
            kind, level, _, bwd, ps = self.steps[i]
            x_in, kept[i] = kept[i], None
            if kind == "add":
                skip_grads[level] = dx
            elif kind == "save":
                dx = dx + skip_grads.pop(level)
            elif kind == "block":
                (dx, dt_i), pgrads = bwd(*key, x_in, t_emb, dx)
                dt = dt_i if dt is None else dt + dt_i
                self._add(grads, ps, pgrads)
            else:
                dx, pgrads = bwd(*key, x_in, dx)
                dx = dx[0] if isinstance(dx, tuple) else dx  # one grad position: MindSpore returns the bare tensor
                self._add(grads, ps, pgrads)
        if dt is None:
            dt = ops.zeros_like(t_emb)
        # 4. the stem
        self._add(grads, self._stem_params, self._stem_bwd(*key, *inputs, dx, dt))
        return outputs, tuple(g if g is not None else ops.zeros_like(p) for g, p in zip(grads, self.params))

    def _add(self, grads: List, params: Sequence[Parameter], values) -> None:
        for p, g in zip(params, values):
            i = self._index[id(p)]
            grads[i] = g if grads[i] is None else grads[i] + g


def _stem_vjp(stem: Callable, params: Sequence[Parameter], keyed: Callable):
    """compiled (key?, *inputs, ∂x, ∂t_emb) → the stem parameters' gradients (no input gradients: the loss's
    inputs are data, one of them the integer timestep)."""

    def dot(*args):
        inputs, dx, dt = args[:-2], args[-2], args[-1]
        x, t_emb = stem(*inputs)
        return ops.sum(x * dx) + ops.sum(t_emb * dt)

    return compiled(keyed(ms.grad(dot, grad_position=None, weights=ParameterTuple(list(params)))))
