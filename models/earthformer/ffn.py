"""Pre-norm position-wise FFN: out = x + Drop(ffn_2(Drop(GELU(ffn_1(LN(x)))))), hidden width 4·C."""
from __future__ import annotations

from mindspore import nn

from ..kernels import Dense, Gelu, LayerNorm
from .init import init_linear


class PositionwiseFFN(nn.Cell):
    def __init__(self, units: int, hidden_size: int, dropout: float = 0.0, activation: str = "gelu",
                 linear_init_mode: str = "0", ffn2_linear_init_mode: str = "2"):
        super().__init__()
        if activation != "gelu":
            raise ValueError(f"unsupported ffn_activation {activation!r}; valid: gelu")
        self.ffn_1 = init_linear(Dense(units, hidden_size), linear_init_mode)
        self.ffn_2 = init_linear(Dense(hidden_size, units), ffn2_linear_init_mode)
        self.layer_norm = LayerNorm(units, epsilon=1e-5)
        self.activation = Gelu()
        self.activation_dropout = nn.Dropout(p=dropout)
        self.dropout = nn.Dropout(p=dropout)

    def construct(self, x):
        out = self.activation(self.ffn_1(self.layer_norm(x)))
        out = self.dropout(self.ffn_2(self.activation_dropout(out)))
        return out + x
