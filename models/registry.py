"""`build(component, config)`: construct a network from its official constructor arguments."""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping

from mindspore import nn

from .earthformer import CuboidTransformerUNet, NoisyCuboidTransformerEncoder
from .vae import AutoencoderKL

COMPONENTS = ("vae", "unet", "align")


def _vae(kwargs):
    return AutoencoderKL(**kwargs)


def _unet(kwargs):
    return CuboidTransformerUNet(**kwargs)


def _align(kwargs):
    return NoisyCuboidTransformerEncoder(**kwargs)


_BUILDERS: Dict[str, Callable[[Dict[str, Any]], nn.Cell]] = {"vae": _vae, "unet": _unet, "align": _align}


def build(component: str, config: Mapping[str, Any]) -> nn.Cell:
    """Build `component` ("vae", "unet", "align") from the dict of official constructor arguments.

    The network is returned in inference mode (`set_train(False)`: dropout off), as the official
    fixtures were produced; trainers switch it on themselves.
    """
    if component not in _BUILDERS:
        raise ValueError(f"unknown component {component!r}; valid: {', '.join(COMPONENTS)}")
    net = _BUILDERS[component](dict(config))
    net.set_train(False)
    return net


def count_parameters(net: nn.Cell) -> int:
    """Number of learnable scalars (official buffers such as relative_position_index are not parameters)."""
    return int(sum(p.size for p in net.trainable_params()))
