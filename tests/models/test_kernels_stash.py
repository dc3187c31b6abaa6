"""The activation stash (models/kernels/stash.py, stash_kernels.cc): a gradient graph whose convolution and linear
layers load the outputs a forward graph stored gives the gradients of the plain layers, really uses the stored
values, keeps one slot per stash for shared layers, and fails — as a Python error — on a slot of another size or one
never stored."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import ParameterTuple, Tensor, nn, ops

from prediff_models.kernels import Conv3d, Dense, library_path
from prediff_models.kernels.stash import LOAD, STORE, ActivationStash, release_stash, stash_bytes

pytestmark = pytest.mark.skipif(library_path() is None, reason="kernel library unavailable")
rng = np.random.default_rng(5)


class _Net(nn.Cell):
    """A convolution (direct kernel), a linear layer without and one with a bias, with nonlinearities between."""

    def __init__(self):
        super().__init__()
        self.conv = Conv3d(4, 8, 3, pad_mode="pad", padding=1, has_bias=True)
        self.conv.bias.set_data(Tensor(rng.standard_normal(8).astype(np.float32)))
        self.d1 = Dense(8, 40, has_bias=False)
        self.d2 = Dense(40, 5)

    def construct(self, x):
        h = ops.gelu(self.conv(x)).transpose(0, 2, 3, 4, 1)  # (N, T, H, W, 8)
        return self.d2(ops.tanh(self.d1(h)))


def _x(batch=1):
    return Tensor(rng.standard_normal((batch, 4, 2, 3, 8)).astype(np.float32))


def _graphs(net, probe):
    """Fresh compiled (forward, value-and-gradient) of L = sum(net(x) · probe): a compiled graph keeps the stash mode
    and slots it was compiled with."""
    def forward(v):
        return net(v)

    def loss(v):
        return (net(v) * probe).sum()

    return ms.jit(forward), ms.jit(ms.value_and_grad(loss, grad_position=0, weights=ParameterTuple(net.trainable_params())))


def _flat(out):
    value, (dx, dws) = out
    return [t.asnumpy().copy() for t in (value, dx, *dws)]


def test_loaded_outputs_give_the_plain_layers_gradients_and_are_really_loaded():
    net = _Net()
    x, probe = _x(), Tensor(rng.standard_normal((1, 2, 3, 8, 5)).astype(np.float32))
    _, plain_grad = _graphs(net, probe)
    reference = _flat(plain_grad(x))
    stash = ActivationStash([net])
    assert len(stash) == 3  # the convolution and both linear layers
    before = stash_bytes()
    forward, grad = _graphs(net, probe)
    stored = stash.run(STORE, forward, x).asnumpy()
    np.testing.assert_array_equal(stored, net(x).asnumpy())  # storing does not change the output
    # new slots for the three outputs: (1, 8, 2, 3, 8), (48, 40) and (48, 5) floats
    assert stash_bytes() - before == 4 * (8 * 2 * 3 * 8 + 2 * 3 * 8 * (40 + 5))
    loaded = _flat(stash.run(LOAD, grad, x))
    for name, a, b in zip(("loss", "dx", "dconv.w", "dconv.b", "dd1.w", "dd2.w", "dd2.b"), loaded, reference):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(b).max()), err_msg=name)
    # the loss of another input in LOAD mode is the stored input's: the layers' outputs came from the slots
    other = _x()
    value = float(stash.run(LOAD, grad, other)[0].asnumpy())
    assert value == pytest.approx(float(reference[0]), rel=1e-6)
    assert abs(float((net(other) * probe).sum().asnumpy()) - value) > 1e-3
    # outside `run` the layers are plain again
    assert all(layer.stash_mode == "off" for layer in stash.layers)


def test_a_layer_shared_by_two_stashes_keeps_one_slot_in_each():
    net = _Net()
    probe = Tensor(rng.standard_normal((1, 2, 3, 8, 5)).astype(np.float32))
    a, b = ActivationStash([net]), ActivationStash([net])
    xa, xb = _x(), _x()
    graphs_a, graphs_b = _graphs(net, probe), _graphs(net, probe)
    a.run(STORE, graphs_a[0], xa)
    b.run(STORE, graphs_b[0], xb)
    la = float(a.run(LOAD, graphs_a[1], xb)[0].asnumpy())  # stash a still holds xa's outputs
    lb = float(b.run(LOAD, graphs_b[1], xa)[0].asnumpy())
    assert la == pytest.approx(float((net(xa) * probe).sum().asnumpy()), rel=1e-5)
    assert lb == pytest.approx(float((net(xb) * probe).sum().asnumpy()), rel=1e-5)


def test_a_slot_of_another_size_or_never_stored_fails_as_an_error():
    net = _Net()
    probe1, probe2 = (Tensor(rng.standard_normal((n, 2, 3, 8, 5)).astype(np.float32)) for n in (1, 2))
    stash = ActivationStash([net])
    stash.run(STORE, _graphs(net, probe1)[0], _x(1))
    with pytest.raises(RuntimeError, match="StashLoad"):  # stored at batch 1, loaded at batch 2
        stash.run(LOAD, _graphs(net, probe2)[1], _x(2))[0].asnumpy()
    never = ActivationStash([net])
    with pytest.raises(RuntimeError, match="StashLoad"):
        never.run(LOAD, _graphs(net, probe1)[1], _x(1))[0].asnumpy()


def test_release_frees_the_slots():
    net = _Net()
    stash = ActivationStash([net])
    stash.run(STORE, _graphs(net, Tensor(np.ones((1, 2, 3, 8, 5), np.float32)))[0], _x()).asnumpy()
    assert stash_bytes() > 0
    release_stash()
    assert stash_bytes() == 0
    with pytest.raises(ValueError, match="valid: off, store, load"):
        stash.set_mode("keep")
