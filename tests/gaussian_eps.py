"""A denoiser whose answer is known: the exact ε-model of data N(m, s²) per element, for testing samplers."""
import prediff_models.diffusion as D
from mindspore import Tensor, nn, ops


class GaussianEps(nn.Cell):
    """The exact ε-model for data ~ N(m, s²) elementwise: E[ε | z_t] = √(1−ᾱ)(z − √ᾱ m)/(ᾱ s² + 1 − ᾱ)."""

    def __init__(self, m, s):
        super().__init__()
        self.m, self.s2 = m, s * s
        self.ac = Tensor(D.default_schedule().arrays["alphas_cumprod"])

    def construct(self, z, t, cond):
        a = D.at(self.ac, t, z.ndim)
        return ops.sqrt(1 - a) * (z - ops.sqrt(a) * self.m) / (a * self.s2 + 1 - a)
