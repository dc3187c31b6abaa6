"""The fused cuboid-attention core: equal to the reorder / batched-matmul layer in inference for every cuboid layout
PreDiff can build (padding, dilated axes, no relative bias, several heads), used by the UNet only, and memory-light."""
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


def test_only_the_unet_uses_it_and_training_takes_the_standard_path():
    from mindspore import Tensor

    import prediff_models as models
    from prediff.config import load_config
    from prediff_models.earthformer.cuboid_attention import CuboidSelfAttentionLayer

    cfg = load_config("tiny")
    unet = models.build("unet", cfg.model_kwargs("unet"))
    align = models.build("align", cfg.model_kwargs("align"))

    def flags(net):
        return {c.fuse_core for _, c in net.cells_and_names() if isinstance(c, CuboidSelfAttentionLayer)}

    assert flags(unet) == {True}
    assert flags(align) == {False}  # guidance differentiates the alignment network in inference
    layer = _layer(16, 2, (2, 2, 2), (4, 4, 4))
    layer.fuse_core = True
    x = Tensor(np.random.default_rng(2).standard_normal((1, 4, 4, 4, 16)).astype(np.float32))
    import mindspore as ms

    def total(inp):
        return layer(inp).sum()

    layer.set_train(True)  # dropout is 0 here, so training and inference compute the same function
    value, grad = ms.value_and_grad(total)(x)  # the kernel has no gradient: training must not reach it
    assert float(np.abs(grad.asnumpy()).max()) > 0
    layer.set_train(False)
    assert float(total(x).asnumpy()) == pytest.approx(float(value.asnumpy()), rel=1e-5, abs=1e-4)
