"""Exponential moving average of network weights (official `LitEma`).

`decay_n = min(decay, (1 + n) / (10 + n))` after n updates, as the official LitEma, so early averages are not
dominated by the random initialisation. The update runs compiled, with no host round trip.
"""
from __future__ import annotations

from typing import Dict

import mindspore as ms
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from prediff.compile import compiled


class EMA:
    """Shadow copies of `net`'s parameters; `update()` after every optimizer step."""

    def __init__(self, net: nn.Cell, decay: float):
        self.decay = float(decay)
        self.names = [name for name, _ in net.parameters_and_names()]
        self.params = ParameterTuple([p for _, p in net.parameters_and_names()])
        self.shadow = ParameterTuple([Parameter(p.value().copy(), name=f"ema.{name}", requires_grad=False)
                                      for name, p in zip(self.names, self.params)])
        self.num_updates = Parameter(Tensor(0, ms.int32), name="ema.num_updates", requires_grad=False)
        params, shadow, counter, top = self.params, self.shadow, self.num_updates, self.decay

        @compiled
        def _update():
            n = ops.cast(counter, ms.float32)
            decay = ops.minimum((1.0 + n) / (10.0 + n), top)
            for s, p in zip(shadow, params):
                ops.assign_sub(s, (1.0 - decay) * (s - p))
            ops.assign_add(counter, ops.ones((), ms.int32))
            return decay

        self._update = _update

    def update(self) -> None:
        self._update()

    def state(self, live: bool = False) -> Dict[str, np.ndarray]:
        """The averaged weights: NumPy copies, or with `live` the shadow parameters themselves."""
        return {name: (s if live else s.asnumpy()) for name, s in zip(self.names, self.shadow)}

    def load_state(self, weights: Dict[str, np.ndarray], num_updates: int) -> None:
        for name, s in zip(self.names, self.shadow):
            s.set_data(Tensor(weights[name]))
        self.num_updates.set_data(Tensor(int(num_updates), ms.int32))
