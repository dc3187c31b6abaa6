"""Mapping between the official PyTorch state_dict and our MindSpore parameter tree.

Our cells are named after the official modules, so an official key maps to the MindSpore parameter of the
same dotted path, except for MindSpore's own leaf names: normalisation layers hold `gamma`/`beta` where
PyTorch has `weight`/`bias`, embeddings hold `embedding_table`. MindSpore's Conv1d stores its kernel as
`[out, in, 1, k]` where PyTorch has `[out, in, k]`; such shapes differ only by unit axes and are reshaped.

Official *buffers* (the int64 `relative_position_index` of each cuboid attention) are not parameters here:
a cell that owns one exposes it through `official_buffers()` → {local name: numpy array}. Loading checks the
stored buffer against ours, which catches a config whose cuboid geometry differs from the file's.
"""
from __future__ import annotations

from typing import Dict, Iterator, Mapping, Tuple

import numpy as np
import mindspore as ms
from mindspore import nn

_LEAF_ALIASES = {"weight": ("weight", "gamma", "embedding_table"), "bias": ("bias", "beta")}
_TO_OFFICIAL = {"gamma": "weight", "beta": "bias", "embedding_table": "weight"}


class StateDictMismatch(ValueError):
    """The official state dict does not fit the network; the message lists what differs on one line."""


def relative_parameters(net: nn.Cell) -> Dict[str, ms.Parameter]:
    """Parameters keyed by their path *inside* `net`. (`Parameter.name` gains the attribute path of any cell
    that later wraps `net`, e.g. `unet.` inside a loss cell; these keys do not.)"""
    return dict(net.parameters_and_names())


def official_buffers(net: nn.Cell) -> Dict[str, np.ndarray]:
    """The official buffers of every cell of `net` (the cuboid attentions' relative_position_index), by path."""
    out = {}
    for prefix, cell in net.cells_and_names():
        getter = getattr(cell, "official_buffers", None)
        if getter is None:
            continue
        for name, value in getter().items():
            out[f"{prefix}.{name}" if prefix else name] = np.asarray(value)
    return out


def _candidates(key: str) -> Iterator[str]:
    head, _, leaf = key.rpartition(".")
    for alias in _LEAF_ALIASES.get(leaf, (leaf,)):
        yield f"{head}.{alias}" if head else alias


def _same_up_to_unit_axes(a: Tuple[int, ...], b: Tuple[int, ...]) -> bool:
    return tuple(d for d in a if d != 1) == tuple(d for d in b if d != 1) and int(np.prod(a)) == int(np.prod(b))


def official_key(ms_name: str) -> str:
    """Official PyTorch key of a MindSpore parameter name."""
    head, _, leaf = ms_name.rpartition(".")
    leaf = _TO_OFFICIAL.get(leaf, leaf)
    return f"{head}.{leaf}" if head else leaf


def load_official_state_dict(net: nn.Cell, state: Mapping[str, np.ndarray]) -> None:
    """Copy an official state dict (key → numpy array) into `net`, number for number.

    Raises `StateDictMismatch` naming the missing, unexpected and mismatched keys if the key set or any
    shape differs, or if a stored buffer disagrees with the network's own; nothing is copied in that case.
    """
    params = relative_parameters(net)
    buffers = official_buffers(net)
    assignments = {}
    unexpected, mismatched, bad_buffers = [], [], []
    matched = set()
    for key, value in state.items():
        value = np.asarray(value)
        if key in buffers:
            if value.shape != buffers[key].shape or not np.array_equal(value, buffers[key]):
                bad_buffers.append(key)
            continue
        name = next((c for c in _candidates(key) if c in params), None)
        if name is None:
            unexpected.append(key)
            continue
        shape = tuple(params[name].shape)
        if value.shape != shape:
            if not _same_up_to_unit_axes(value.shape, shape):
                mismatched.append(f"{key} (file {list(value.shape)} vs network {list(shape)})")
                matched.add(name)
                continue
            value = value.reshape(shape)
        assignments[name] = value
    missing = [official_key(n) for n in params if n not in assignments and n not in matched]
    missing += [k for k in buffers if k not in state]
    if missing or unexpected or mismatched or bad_buffers:
        raise StateDictMismatch(mismatch_summary(missing, unexpected, mismatched, bad_buffers))
    for name, value in assignments.items():
        param = params[name]
        param.set_data(ms.Tensor(value, dtype=param.dtype))


def official_state_dict(net: nn.Cell) -> Dict[str, np.ndarray]:
    """The network's weights (and official buffers) under official keys.

    Kernels that MindSpore stores with extra unit axes (Conv1d) keep MindSpore's shape;
    `load_official_state_dict` accepts either form."""
    out = {official_key(name): p.asnumpy() for name, p in relative_parameters(net).items()}
    out.update(official_buffers(net))
    return out


def mismatch_summary(missing, unexpected, mismatched, bad_buffers, not_finite=()) -> str:
    """One line listing what differs between a state dict and a network (a few names of each kind)."""
    def part(label, items):
        if not items:
            return None
        shown = ", ".join(items[:4]) + (f", ... (+{len(items) - 4} more)" if len(items) > 4 else "")
        return f"{len(items)} {label}: {shown}"

    parts = [part("missing", missing), part("unexpected", unexpected), part("with a different shape", mismatched),
             part("buffers that differ from this config's geometry", bad_buffers),
             part("not finite or not floating point", list(not_finite))]
    return "state dict does not match the network: " + "; ".join(p for p in parts if p)
