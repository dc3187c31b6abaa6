"""The linear layers' GEMM kernels (models/kernels/gemm_kernels.cc, `kernels.Dense` on AVX-512 CPUs): forward and the
three gradients equal `nn.Dense` under MindSpore's autodiff, compiled, on shapes that exercise every edge (rows not a
multiple of the 12-row tile, outputs not a multiple of the 32-column tile, reductions longer than one 512 chunk);
mismatched shapes are refused by the C entry points themselves."""
import ctypes

import numpy as np
import mindspore as ms
import pytest
from mindspore import ParameterTuple, Tensor, nn

from prediff_models.kernels import Dense, library_path
from prediff_models.kernels.dense import gemm_enabled
from prediff_models.kernels.library import uses_avx512

pytestmark = pytest.mark.skipif(not uses_avx512(), reason="GEMM kernels need the kernel library and AVX-512F")
rng = np.random.default_rng(11)


class _Loss(nn.Cell):
    """sum(layer(x) · probe): its gradients are the layer's vector-Jacobian product with `probe`."""

    def __init__(self, layer, probe):
        super().__init__()
        self.layer, self.probe = layer, probe

    def construct(self, x):
        return (self.layer(x) * self.probe).sum()


def _pair(n_in, n_out, has_bias):
    ours, reference = Dense(n_in, n_out, has_bias=has_bias), nn.Dense(n_in, n_out, has_bias=has_bias)
    reference.weight.set_data(Tensor(rng.standard_normal((n_out, n_in)).astype(np.float32) / np.sqrt(n_in)))
    ours.weight.set_data(reference.weight.data)
    if has_bias:
        reference.bias.set_data(Tensor(rng.standard_normal(n_out).astype(np.float32)))
        ours.bias.set_data(reference.bias.data)
    return ours, reference


def _value_and_grads(layer, x, probe):
    loss = _Loss(layer, probe)
    fn = ms.jit(ms.value_and_grad(loss, grad_position=0, weights=ParameterTuple(layer.trainable_params())))
    value, (dx, dws) = fn(x)
    return [t.asnumpy() for t in (value, dx, *dws)]


@pytest.mark.skipif(not gemm_enabled(), reason="PREDIFF_KERNEL_GEMM=0 keeps MindSpore's matmul")
@pytest.mark.parametrize("lead, n_in, n_out, has_bias", [
    ((3, 37), 48, 80, True),       # 111 rows: a partial 12-row tile; 80 = two full 32-column tiles and a half one
    ((2, 5, 7), 19, 33, False),    # no bias; every extent odd
    ((700,), 600, 40, True),       # reductions longer than one chunk in the forward (600) and weight gradient (700)
    ((4, 13), 1030, 530, True),    # the input gradient's reduction (530) and the forward's (1030) span chunks
])
def test_dense_on_the_gemm_kernels_equals_nn_dense(lead, n_in, n_out, has_bias):
    ours, reference = _pair(n_in, n_out, has_bias)
    assert ours._gemm is not None
    x = Tensor(rng.standard_normal(lead + (n_in,)).astype(np.float32))
    probe = Tensor(rng.standard_normal(lead + (n_out,)).astype(np.float32))
    forward = ms.jit(ours)(x).asnumpy()
    np.testing.assert_allclose(forward, reference(x).asnumpy(), rtol=1e-5, atol=2e-5)
    got, want = _value_and_grads(ours, x, probe), _value_and_grads(reference, x, probe)
    names = ("loss", "dx", "dw", "db")[:len(want)]
    for name, a, b in zip(names, got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5 * max(1.0, np.abs(b).max()), err_msg=name)


def test_prediff_kernel_gemm_0_keeps_mindspores_matmul(monkeypatch):
    monkeypatch.setenv("PREDIFF_KERNEL_GEMM", "0")
    ours, reference = _pair(24, 40, True)
    assert ours._gemm is None and ours.fused  # still the ones-row bias gradient
    x = Tensor(rng.standard_normal((5, 24)).astype(np.float32))
    np.testing.assert_allclose(ms.jit(ours)(x).asnumpy(), reference(x).asnumpy(), rtol=1e-6, atol=1e-6)
    no_bias = Dense(24, 40, has_bias=False)
    assert no_bias._gemm is None and not no_bias.fused  # nn.Dense itself


def _call(function, *arrays):
    """The library's AOT entry point `function` on numpy arrays, as MindSpore calls it; returns its status."""
    lib = ctypes.CDLL(library_path())
    n = len(arrays)
    params = (ctypes.c_void_p * n)(*[a.ctypes.data for a in arrays])
    ndims = (ctypes.c_int * n)(*[a.ndim for a in arrays])
    shapes = [(ctypes.c_int64 * max(1, a.ndim))(*a.shape) for a in arrays]
    shape_ptrs = (ctypes.POINTER(ctypes.c_int64) * n)(*[ctypes.cast(s, ctypes.POINTER(ctypes.c_int64)) for s in shapes])
    fn = getattr(lib, function)
    fn.restype = ctypes.c_int
    return fn(ctypes.c_int(n), params, ndims, shape_ptrs, None, None, None)


def test_entry_points_compute_and_refuse_mismatched_shapes():
    x = rng.standard_normal((30, 20)).astype(np.float32)
    w = rng.standard_normal((50, 20)).astype(np.float32)
    b = rng.standard_normal(50).astype(np.float32)
    dy = rng.standard_normal((30, 50)).astype(np.float32)
    y, dx, dw = np.zeros((30, 50), np.float32), np.zeros((30, 20), np.float32), np.zeros((50, 20), np.float32)
    assert _call("DenseForward", x, w, b, y) == 0
    np.testing.assert_allclose(y, x @ w.T + b, rtol=1e-5, atol=1e-5)
    assert _call("DenseInputGrad", dy, w, dx) == 0
    np.testing.assert_allclose(dx, dy @ w, rtol=1e-5, atol=1e-5)
    assert _call("DenseWeightGrad", dy, x, dw) == 0
    np.testing.assert_allclose(dw, dy.T @ x, rtol=1e-5, atol=1e-5)
    before = y.copy()
    assert _call("DenseForward", x, w, b[:49].copy(), y) == 1          # bias of the wrong length
    assert _call("DenseForward", x, w[:, :19].copy(), b, y) == 1       # weight of another input width
    assert _call("DenseForward", x, w, b, y[:29].copy()) == 1          # output of the wrong row count
    assert _call("DenseForwardNoBias", x, w, b, y) == 1                # one parameter too many
    assert _call("DenseInputGrad", dy, w, dw) == 1                     # dx shaped like w
    assert _call("DenseWeightGrad", dy, x[:29].copy(), dw) == 1        # x and dy of different row counts
    assert _call("DenseWeightGrad", dy, x, np.zeros(20, np.float32)) == 1  # a 1-D output
    np.testing.assert_array_equal(y, before)  # a refused call writes nothing
