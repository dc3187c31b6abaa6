"""Activation recomputation (gradient checkpointing) for the three PreDiff networks.

MindSpore's `Cell.recompute()` marks a cell so that, in the backward pass, the operators inside it are run again
from the cell's input instead of keeping their outputs alive from the forward pass; only the cell's output is
stored. This trades one extra forward of the marked cells for the memory of their intermediates, which for the
Earthformer-UNet are dominated by the attention maps and the 4x-wide FFN hidden layer of every block.

Levels (the counterpart of the official `checkpoint_level` constructor argument of the Earthformer networks):

* 0 — nothing is recomputed;
* 1 — every cuboid self-attention layer and position-wise FFN (UNet, alignment network); every ResNet block and
  attention block (VAE). The PatchGAN discriminator is never marked: its BatchNorm layers update their running
  statistics in every forward, so a recomputed forward would count each batch twice;
* 2 — level 1, plus the 3-D convolution blocks with time embedding (UNet, alignment network) and the whole
  down/up/mid stages of the VAE.

The marks must be set before the training graph is compiled; inference graphs ignore them (no backward pass).
Dropout stays exact under recomputation because prediff's training dropout draws its mask from a key, not from
a stream (the recomputed mask equals the forward one).
"""
from __future__ import annotations

from typing import Tuple, Type

from mindspore import nn

LEVELS = (0, 1, 2)


def _kinds(level: int) -> Tuple[Type[nn.Cell], ...]:
    from .earthformer.cuboid_attention import CuboidSelfAttentionLayer
    from .earthformer.ffn import PositionwiseFFN
    from .earthformer.time_embed_block import TimeEmbedResBlock
    from .vae.attention import AttentionBlock
    from .vae.blocks import ResnetBlock2D, UNetMidBlock2D, _ResnetStage

    kinds = [CuboidSelfAttentionLayer, PositionwiseFFN, ResnetBlock2D, AttentionBlock]
    if level >= 2:
        kinds += [TimeEmbedResBlock, _ResnetStage, UNetMidBlock2D]
    return tuple(kinds)


def enable_recompute(net: nn.Cell, level: int) -> int:
    """Mark the cells of `net` that `level` (0, 1, 2) recomputes; returns how many were marked.

    A cell inside an already-marked cell is not marked again (its parent's recomputation covers it).
    """
    if int(level) not in LEVELS:
        raise ValueError(f"recompute level {level!r} is not valid; valid: {', '.join(map(str, LEVELS))}")
    if int(level) == 0:
        return 0
    kinds = _kinds(int(level))
    marked = []
    for name, cell in net.cells_and_names():
        if not isinstance(cell, kinds) or any(name.startswith(m + ".") for m in marked):
            continue
        cell.recompute()
        marked.append(name)
    return len(marked)
