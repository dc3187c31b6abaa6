"""Keep convolution and linear-layer outputs from a forward graph for a later gradient graph (`stash_kernels.cc`).

A gradient graph that recomputes a block's forward (the block-by-block UNet gradient) spends nine tenths of that
recomputation in the block's 3×3×3 convolutions and linear layers. `ActivationStash(cells)` gives every such layer
inside `cells` (`kernels.Conv3d` on its direct kernel, `kernels.Dense` without activation) a slot. Then:

* `stash.run(STORE, fn, *args)`: the layers compute as usual and also copy their outputs, (rows, out) or
  (N, C_out, T, H, W) float32, into their slots (held in C++, outside MindSpore's memory pool);
* `stash.run(LOAD, fn, *args)`: the layers copy their slots back instead of computing — their inputs are still
  computed, since the layers' gradients need them — and differentiate as the layers themselves (the convolution's
  gradient kernels, the linear layer's two matmuls and its bias sum). A slot holding a different number of values
  than the output fails the call; the values of the last store are used as they are, so a LOAD graph must follow
  the STORE of the same inputs (and of the same dropout key) — the caller's ordering, not checked here;
* outside `run` the layers are their plain selves (`OFF`).

The mode is a Python attribute that MindSpore reads when it compiles a graph, so `run` sets it before every call
and resets it after; a graph compiled under one mode keeps it. Memory: the slots hold one float per output value
of every stashed layer until `release_stash()`, and are reused by the next store of the same size.
"""
from __future__ import annotations

import ctypes
import functools
import itertools
from typing import Callable, Iterable, List

from mindspore import Tensor, nn, ops
from mindspore.common import dtype as mstype

from .library import custom_op, library_path

OFF, STORE, LOAD = "off", "store", "load"
_slots = itertools.count()  # slot numbers unique within the process


def _one_value(y, *rest):
    return [1]


def store_op():
    """`StashStore(y, slot) -> (1,)` zero: keeps y in the slot; or None without the kernel library. The caller
    orders it before y's next use with `ops.depend(y, store(y, slot))` (no copy of y in the graph)."""
    def bprop(y, slot, out, dout):
        return ops.zeros_like(y), ops.zeros_like(slot)

    return custom_op("StashStore", bprop, out_shape=_one_value)


def stored(store, y, slot):
    """y, once `store` has kept it in `slot`."""
    return ops.depend(y, store(y, slot))


def stashable(cell: nn.Cell) -> bool:
    """Whether `cell` is a layer that can keep its output (see the module docstring)."""
    return callable(getattr(cell, "enable_stash", None)) and cell.can_stash()


class ActivationStash:
    """The stashable layers inside `cells`, with one slot per layer and per `ActivationStash`: a layer that several
    blocks share (the UNet's per-level time-embedding block) gets a slot in each block's stash, and `run` points the
    layer at its slot in this one before calling."""

    def __init__(self, cells: Iterable[nn.Cell]):
        self.layers: List[nn.Cell] = []
        seen = set()
        for cell in cells:
            for _, sub in cell.cells_and_names():
                if id(sub) not in seen and stashable(sub):
                    seen.add(id(sub))
                    sub.enable_stash()
                    self.layers.append(sub)
        self.slots = [slot_tensor(next(_slots)) for _ in self.layers]

    def __len__(self) -> int:
        return len(self.layers)

    def set_mode(self, mode: str) -> None:
        if mode not in (OFF, STORE, LOAD):
            raise ValueError(f"unknown stash mode {mode!r}; valid: {OFF}, {STORE}, {LOAD}")
        for layer, slot in zip(self.layers, self.slots):
            layer.stash_mode = mode
            layer.stash_slot = slot

    def run(self, mode: str, fn: Callable, *args):
        """`fn(*args)` with the layers in `mode` on this stash's slots, then back to OFF."""
        self.set_mode(mode)
        try:
            return fn(*args)
        finally:
            self.set_mode(OFF)

    def bound(self, mode: str, fn: Callable) -> Callable:
        """`fn` that always runs with the layers in `mode` (for a compiled graph: compiled and run in that mode)."""
        def in_mode(*args):
            return self.run(mode, fn, *args)
        return in_mode


@functools.lru_cache(maxsize=None)
def _library():
    """The kernel library as ctypes sees it (the same loaded object MindSpore's ops use), or None."""
    path = library_path()
    if path is None:
        return None
    lib = ctypes.CDLL(path)
    lib.prediff_stash_bytes.restype = ctypes.c_int64
    return lib


def stash_bytes() -> int:
    """Bytes held by all slots (0 without the kernel library)."""
    lib = _library()
    return 0 if lib is None else int(lib.prediff_stash_bytes())


def release_stash() -> None:
    """Free every slot (the next store allocates again). Graph launches are asynchronous: call this only once the
    outputs of every graph that loads from a slot have been read (a load that finds its slot gone fails)."""
    lib = _library()
    if lib is not None:
        lib.prediff_stash_release()


def slot_tensor(slot: int) -> Tensor:
    """The (1,) int32 tensor that names `slot` to the kernels."""
    return Tensor([int(slot)], mstype.int32)
