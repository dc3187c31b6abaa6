"""Initialisation modes of the official Earthformer code (`apply_initialization`), as MindSpore initializers.

Linear "0": N(0, 1/fan_in) (PyTorch kaiming_normal, fan_in, linear gain), bias 0; "2": weight and bias 0.
Norms: weight 1, bias 0. Embedding tables and relative-position tables: N(0, 0.02²) (the official truncation at
±2 is 100σ away, i.e. no truncation in practice). Conv "0": the framework default, which in MindSpore 2.x equals
PyTorch's (kaiming-uniform a=√5, bias U(±1/√fan_in)).
"""
from __future__ import annotations

import math

from mindspore import nn
from mindspore.common.initializer import Normal, Zero, initializer

LINEAR_MODES = ("0", "2")


def init_linear(layer: nn.Dense, mode: str) -> nn.Dense:
    if mode not in LINEAR_MODES:
        raise ValueError(f"unsupported linear init mode {mode!r}; valid: {', '.join(LINEAR_MODES)}")
    fan_in = layer.weight.shape[1]
    weight = Normal(sigma=1.0 / math.sqrt(fan_in)) if mode == "0" else Zero()
    layer.weight.set_data(initializer(weight, layer.weight.shape, layer.weight.dtype))
    if layer.bias is not None:
        layer.bias.set_data(initializer(Zero(), layer.bias.shape, layer.bias.dtype))
    return layer


def zero_cell(cell: nn.Cell) -> nn.Cell:
    for p in cell.get_parameters():
        p.set_data(initializer(Zero(), p.shape, p.dtype))
    return cell


def normal_table(shape, sigma: float = 0.02):
    return initializer(Normal(sigma=sigma), shape)


def check_mode(name: str, value: str, valid=("0",)) -> None:
    if str(value) not in valid:
        raise ValueError(f"unsupported {name} {value!r}; valid: {', '.join(valid)}")
