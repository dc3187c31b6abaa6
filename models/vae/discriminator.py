"""PatchGAN discriminator of the VAE loss (official taming `NLayerDiscriminator` with BatchNorm)."""
from __future__ import annotations

from mindspore import Tensor, nn
from mindspore.common.initializer import Normal


def _conv(in_channels: int, out_channels: int, stride: int, bias: bool) -> nn.Conv2d:
    # 4×4 kernel, padding 1; weights N(0, 0.02) as the official `weights_init`. Biases keep the
    # PyTorch-equal default U(±1/√fan_in), which the official init leaves untouched too.
    return nn.Conv2d(in_channels, out_channels, 4, stride=stride, pad_mode="pad", padding=1, has_bias=bias,
                     weight_init=Normal(sigma=0.02, mean=0.0))


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    # MindSpore's momentum is the weight of the old running value: 0.9 here = PyTorch's momentum 0.1.
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9, gamma_init=Normal(sigma=0.02, mean=1.0),
                          beta_init="zeros")


class NLayerDiscriminator(nn.Cell):
    """(N, input_nc, H, W) → patch logits (N, 1, H', W'); 128×128 input gives 14×14 with n_layers = 3.

    `main` is a SequentialCell whose indices equal the official state_dict indices: conv(stride 2) +
    LeakyReLU(0.2), then n_layers − 1 × [conv(stride 2, no bias), BatchNorm, LeakyReLU], then
    [conv(stride 1, no bias), BatchNorm, LeakyReLU] and a final conv(stride 1) to one channel.
    Widths ndf·min(2^n, 8). BatchNorm uses batch statistics in training mode, running ones in eval mode.
    """

    def __init__(self, input_nc: int = 1, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        if input_nc < 1 or ndf < 1 or n_layers < 1:
            raise ValueError("input_nc, ndf and n_layers must be positive integers")
        layers = [_conv(input_nc, ndf, 2, True), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [_conv(ndf * prev, ndf * mult, stride, False), _batch_norm(ndf * mult), nn.LeakyReLU(0.2)]
        layers.append(_conv(ndf * mult, 1, 1, True))
        self.main = nn.SequentialCell(layers)

    def construct(self, x: Tensor) -> Tensor:
        return self.main(x)
