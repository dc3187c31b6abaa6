"""The fused cuboid-attention core: equal to the reorder / batched-matmul layer in inference for every cuboid layout
PreDiff can build (padding, dilated axes, no relative bias, several heads), memory-light, and with a gradient
kernel equal to MindSpore's autodiff of that layer."""
from __future__ import annotations

import numpy as np
import pytest

import prediff  # noqa: F401  (MindSpore's environment first)
from prediff_models.kernels import library_path

pytestmark = pytest.mark.skipif(library_path() is None, reason="fused kernels unavailable here")


def _layer(dim, heads, cuboid, data_shape, strategy=("l", "l", "l"), rel=True, seed=0):
    from mindspore import Tensor

    from prediff_models.earthformer.cuboid_attention import CuboidSelfAttentionLayer

    layer = CuboidSelfAttentionLayer(dim, heads, cuboid, data_shape, strategy=strategy, use_relative_pos=rel)
    rng = np.random.default_rng(seed)
    for p in layer.trainable_params():  # non-trivial weights everywhere, biases and bias table included
        p.set_data(Tensor(rng.standard_normal(p.shape).astype(np.float32) * 0.3))
    layer.set_train(False)
    return layer


@pytest.mark.parametrize("dim,heads,cuboid,data_shape,strategy,rel", [
    (16, 2, (4, 1, 1), (4, 5, 6), ("l", "l", "l"), True),     # axial in T
    (16, 4, (1, 5, 1), (3, 5, 4), ("l", "l", "l"), True),     # axial in H, 4 heads
    (8, 1, (2, 3, 2), (5, 7, 4), ("l", "l", "l"), True),      # padding on T and H (5 → 6, 7 → 9)
    (16, 2, (2, 2, 2), (4, 4, 6), ("d", "l", "d"), True),     # dilated T and W
    (16, 2, (3, 2, 1), (4, 3, 3), ("d", "d", "l"), False),    # dilated with padding, no relative bias
    (16, 2, (4, 5, 1), (4, 5, 6), ("l", "l", "l"), True),     # 20 keys: two and then one group of 8 scores
])
def test_fused_core_equals_the_reorder_formulation(dim, heads, cuboid, data_shape, strategy, rel):
    from mindspore import Tensor

    layer = _layer(dim, heads, cuboid, data_shape, strategy, rel)
    x = Tensor(np.random.default_rng(1).standard_normal((2,) + tuple(data_shape) + (dim,)).astype(np.float32))
    layer.fuse_core = False
    reference = layer(x).asnumpy()
    layer.fuse_core = True
    fused = layer(x).asnumpy()
    assert fused.shape == reference.shape
    np.testing.assert_allclose(fused, reference, rtol=2e-5, atol=2e-5 * np.abs(reference).max())


def _standard_and_fused(layer, x, w, compiled: bool):
    """[(name, standard, fused)] for the value of sum(layer(x)·w) and its gradients to x and every parameter."""
    import mindspore as ms

    params = layer.trainable_params()

    def objective(inp):
        return (layer(inp) * w).sum()

    results = {}
    for fuse in (False, True):
        layer.fuse_core = fuse
        step = ms.value_and_grad(objective, grad_position=0, weights=params)
        value, (gx, gw) = (ms.jit(step) if compiled else step)(x)
        results[fuse] = [value.asnumpy(), gx.asnumpy()] + [g.asnumpy() for g in gw]
    names = ["value", "x"] + [p.name for p in params]
    return list(zip(names, results[False], results[True]))


CASES_GRAD = [
    (16, 2, (4, 1, 1), (4, 5, 6), ("l", "l", "l"), True),
    (8, 1, (2, 3, 2), (5, 7, 4), ("l", "l", "l"), True),
    (16, 2, (3, 2, 1), (4, 3, 3), ("d", "d", "l"), False),
]


@pytest.mark.parametrize("dim,heads,cuboid,data_shape,strategy,rel", CASES_GRAD)
@pytest.mark.parametrize("training", [False, True])
def test_gradient_kernel_equals_autodiff_of_the_reorder_formulation(dim, heads, cuboid, data_shape, strategy, rel,
                                                                    training):
    """Input and weight gradients (bias table, norm, projections) of the fused layer against MindSpore's autodiff
    of the standard layer: in inference (guidance) and in training without attention dropout."""
    from mindspore import Tensor

    layer = _layer(dim, heads, cuboid, data_shape, strategy, rel, seed=3)
    layer.set_train(training)
    rng = np.random.default_rng(4)
    x = Tensor(rng.standard_normal((2,) + tuple(data_shape) + (dim,)).astype(np.float32))
    w = Tensor(rng.standard_normal((2,) + tuple(data_shape) + (dim,)).astype(np.float32))
    for name, ref, got in _standard_and_fused(layer, x, w, compiled=False):
        assert float(np.abs(ref).max()) > 0, name  # every gradient is exercised
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()), err_msg=name)


@pytest.mark.parametrize("dim,heads,cuboid,data_shape,strategy,rel", CASES_GRAD)
def test_keyed_attention_dropout_drops_the_same_weights_in_both_paths(dim, heads, cuboid, data_shape, strategy, rel):
    """With the trainers' keyed dropout (p = 0.3) the fused kernel and the standard layer give the same value and
    gradients in a compiled training step, and a different key gives a different value (the mask is applied)."""
    from mindspore import Parameter, Tensor

    from prediff_models.earthformer.cuboid_attention import CuboidSelfAttentionLayer
    from prediff_models.keyed_dropout import KeyedDropout

    layer = CuboidSelfAttentionLayer(dim, heads, cuboid, data_shape, strategy=strategy, use_relative_pos=rel,
                                     attn_drop=0.3)
    rng = np.random.default_rng(6)
    for p in layer.trainable_params():
        p.set_data(Tensor(rng.standard_normal(p.shape).astype(np.float32) * 0.3))
    key = Parameter(Tensor(np.uint32(12345)), name="key", requires_grad=False)
    layer.attn_drop.dropout = KeyedDropout(0.3, 2, key)
    layer.set_train(True)
    x = Tensor(rng.standard_normal((2,) + tuple(data_shape) + (dim,)).astype(np.float32))
    w = Tensor(rng.standard_normal((2,) + tuple(data_shape) + (dim,)).astype(np.float32))
    compared = _standard_and_fused(layer, x, w, compiled=True)
    for name, ref, got in compared:
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()), err_msg=name)
    key.set_data(Tensor(np.uint32(54321)))
    other = _standard_and_fused(layer, x, w, compiled=True)[0][2]  # the fused value with the other key
    assert abs(float(other) - float(compared[0][2])) > 1e-3


def test_every_network_fuses_and_unkeyed_attention_dropout_keeps_the_standard_path():
    import prediff_models as models
    from mindspore import Tensor

    from prediff.config import load_config
    from prediff_models.earthformer.cuboid_attention import CuboidSelfAttentionLayer

    cfg = load_config("tiny")
    for component in ("unet", "align"):
        net = models.build(component, cfg.model_kwargs(component))
        assert {c.fuse_core for _, c in net.cells_and_names() if isinstance(c, CuboidSelfAttentionLayer)} == {True}
    layer = CuboidSelfAttentionLayer(16, 2, (2, 2, 2), (4, 4, 4), attn_drop=0.5)
    rng = np.random.default_rng(5)
    for p in layer.trainable_params():
        p.set_data(Tensor(rng.standard_normal(p.shape).astype(np.float32) * 0.3))
    x = Tensor(rng.standard_normal((1, 4, 4, 4, 16)).astype(np.float32))
    layer.set_train(False)
    inference = layer(x).asnumpy()
    layer.set_train(True)  # MindSpore's own dropout (not keyed): the kernel cannot draw its masks
    first, second = layer(x).asnumpy(), layer(x).asnumpy()
    assert np.abs(first - inference).max() > 1e-3 and np.abs(first - second).max() > 1e-3
