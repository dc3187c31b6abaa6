"""Mapping between MindEarth's PreDiff checkpoints and our MindSpore parameter tree.

MindEarth (mindspore-ai/mindscience, `MindEarth/applications/nowcasting/PreDiff`) ports the official networks to
MindSpore cell by cell under the official attribute paths, so a name in its checkpoints is our parameter's name
(MindSpore leaves: `gamma`/`beta` for the norms, `embedding_table` for the embeddings) with one exception: the
position embedding's tables are `pos_embed.t_embed` / `h_embed` / `w_embed` where the official code and ours have
`T_embed` / `H_embed` / `W_embed`. Beyond names:

* each cuboid attention's `relative_position_index` is an int64 Parameter there (a buffer here); the stored one
  must equal ours, which catches a checkpoint from another cuboid geometry;
* the alignment readout's Conv1d kernels are `[out, in, 1, k]` (MindSpore's Conv1d, as ours); the official
  `[out, in, k]` is accepted too;
* MindEarth's UNet builds `down_/up_hierarchical_pos_embed_l` when `hierarchical_pos_embed` is true but never applies
  them (its forward has no such step), so their tables are checked for shape and dropped.

Every other tensor must be present with exactly our shape, and nothing else may be in the file.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Tuple

import numpy as np
import mindspore as ms
from mindspore import nn

from .earthformer import CuboidTransformerUNet
from .official import StateDictMismatch, mismatch_summary, official_buffers, relative_parameters

_TABLE_NAMES = {"T_embed": "t_embed", "H_embed": "h_embed", "W_embed": "w_embed"}
_HIERARCHICAL = ("down_hierarchical_pos_embed_l", "up_hierarchical_pos_embed_l")


def mindearth_key(name: str) -> str:
    """MindEarth's checkpoint name of our parameter `name` (a path inside one network)."""
    parts = name.split(".")
    for i in range(len(parts) - 1):
        if parts[i] == "pos_embed" and parts[i + 1] in _TABLE_NAMES:
            parts[i + 1] = _TABLE_NAMES[parts[i + 1]]
    return ".".join(parts)


def unused_entries(net: nn.Cell) -> Dict[str, Tuple[int, ...]]:
    """Tensors MindEarth's version of `net` may hold that its forward never reads: name → shape.

    For the UNet: the hierarchical position embeddings of every level but the last, PosEmbed(block_units[i],
    mem_shapes[i][:3]) going down and up (built when `hierarchical_pos_embed` is true)."""
    if not isinstance(net, CuboidTransformerUNet):
        return {}
    out = {}
    for stack in _HIERARCHICAL:
        for i in range(net.num_blocks - 1):
            t, h, w = net.mem_shapes[i][:3]
            width = net.block_units[i]
            for axis, size in (("t", t), ("h", h), ("w", w)):
                out[f"{stack}.{i}.{axis}_embed.embedding_table"] = (int(size), int(width))
    return out


def top_level_names(net: nn.Cell) -> set:
    """First path segments of every name a MindEarth checkpoint of `net` may hold (to find where a prefix ends)."""
    names = [mindearth_key(n) for n in relative_parameters(net)] + list(official_buffers(net))
    names += list(unused_entries(net))
    return {n.split(".", 1)[0] for n in names}


def split_prefix(keys: Iterable[str], top_level: set) -> Dict[str, List[str]]:
    """Group checkpoint keys by the prefix before the network's own path: prefix ("" for none) → keys. Keys with no
    segment naming a top-level cell of the network are grouped under None."""
    groups: Dict[str, List[str]] = {}
    for key in keys:
        parts = key.split(".")
        cut = next((i for i, part in enumerate(parts[:-1]) if part in top_level), None)
        prefix = None if cut is None else "".join(p + "." for p in parts[:cut])
        groups.setdefault(prefix, []).append(key)
    return groups


def _conv1d_alternative(file_shape: Tuple[int, ...], shape: Tuple[int, ...]) -> bool:
    """The official Conv1d kernel layout [out, in, k] of our (MindSpore's) [out, in, 1, k]."""
    return len(shape) == 4 and shape[2] == 1 and file_shape == (shape[0], shape[1], shape[3])


def load_mindearth_state_dict(net: nn.Cell, state: Mapping[str, np.ndarray]) -> List[str]:
    """Copy a MindEarth checkpoint's tensors (prefix removed: name → array) into `net`, number for number.

    Returns the names of the tensors MindEarth holds but never uses (dropped). Raises `StateDictMismatch` naming
    the missing, unexpected, mis-shaped, non-finite and mismatched-buffer entries (in MindEarth's names) if anything
    differs; nothing is copied in that case. The unused tensors must be all present with their shapes, or none.
    """
    params = relative_parameters(net)
    expected = {mindearth_key(name): name for name in params}
    buffers = official_buffers(net)
    unused = unused_entries(net)
    assignments, dropped = {}, []
    unexpected, mismatched, bad_buffers, not_finite = [], [], [], []
    for key, value in state.items():
        value = np.asarray(value)
        if key in buffers:
            if value.shape != buffers[key].shape or value.dtype.kind not in "iu" \
                    or not np.array_equal(value, buffers[key]):
                bad_buffers.append(key)
            continue
        if key in unused:
            if value.shape != unused[key]:
                mismatched.append(f"{key} (file {list(value.shape)} vs {list(unused[key])})")
            dropped.append(key)
            continue
        name = expected.get(key)
        if name is None:
            unexpected.append(key)
            continue
        shape = tuple(params[name].shape)
        if value.shape != shape and not _conv1d_alternative(value.shape, shape):
            mismatched.append(f"{key} (file {list(value.shape)} vs network {list(shape)})")
            assignments[name] = None
            continue
        if value.dtype.kind != "f" or not np.isfinite(value).all():
            not_finite.append(key)
            assignments[name] = None
            continue
        assignments[name] = value.reshape(shape)
    missing = [key for key, name in expected.items() if name not in assignments]
    missing += [key for key in buffers if key not in state]
    if dropped and len(dropped) != len(unused):
        missing += [key for key in unused if key not in state]
    if missing or unexpected or mismatched or bad_buffers or not_finite:
        raise StateDictMismatch(mismatch_summary(missing, unexpected, mismatched, bad_buffers, not_finite))
    for name, value in assignments.items():
        param = params[name]
        param.set_data(ms.Tensor(value, dtype=param.dtype))
    return dropped
