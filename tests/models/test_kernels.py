"""The fused CPU kernels (models/kernels): they build here, equal MindSpore's own layers forward and backward (the
gradient kernels against MindSpore's autodiff), and the networks fall back to the standard ops when they are
switched off."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, nn

from prediff_models.kernels import (ChannelsFirst, ChannelsLast, Gelu, GroupNorm, LayerNorm, library_path,
                            unavailable_reason)

ROOT = Path(__file__).resolve().parents[2]
rng = np.random.default_rng(0)


def _t(*shape, scale=1.0, shift=0.0):
    return Tensor((rng.standard_normal(shape) * scale + shift).astype(np.float32))


def _affine(cell, channels):
    cell.gamma.set_data(_t(channels))
    cell.beta.set_data(_t(channels))
    return cell


def test_library_builds_on_this_machine():
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler")
    assert library_path() is not None, unavailable_reason()
    assert Path(library_path()).is_file()


def _standard(cell, on: bool):
    """Switch `cell` (and its sub-cells) between the fused kernels and MindSpore's own ops."""
    for _, sub in cell.cells_and_names():
        if hasattr(sub, "fused") and isinstance(sub.fused, bool) and sub.fused != (not on):
            sub.fused = not on
    return cell


def _fused_and_standard(cell, x):
    """(output with the fused kernel, output of the standard layer) for the same cell and input."""
    assert cell.fused
    fused = ms.jit(cell.construct)(x).asnumpy()
    standard = _standard(cell, True)(x).asnumpy()
    _standard(cell, False)
    return fused, standard


CASES = [
    ("gelu", lambda: Gelu(), (64, 96), 3.0, 0.0),
    ("groupnorm+silu", lambda: _affine(GroupNorm(8, 32, eps=1e-6, silu=True), 32), (2, 32, 5, 7), 3.0, 40.0),
    ("groupnorm, one group per channel", lambda: _affine(GroupNorm(12, 12, eps=1e-5), 12), (2, 12, 3, 4, 5), 2.0, 1.0),
    ("layernorm", lambda: _affine(LayerNorm(48), 48), (3, 5, 48), 2.0, 1.0),
    ("channels first", lambda: ChannelsFirst(), (2, 3, 37, 5, 40), 1.0, 0.0),  # sizes off the 32-tile grid
    ("channels last", lambda: ChannelsLast(), (2, 40, 3, 37, 5), 1.0, 0.0),
]


@pytest.mark.parametrize("name,make,shape,scale,shift", CASES, ids=[c[0] for c in CASES])
def test_forward_equals_the_standard_layer(name, make, shape, scale, shift):
    if library_path() is None:
        pytest.skip(unavailable_reason())
    # a large mean (shift 40) checks the variance is taken around the mean, not as E[x²] − mean²
    fused, standard = _fused_and_standard(make(), _t(*shape, scale=scale, shift=shift))
    np.testing.assert_allclose(fused, standard, atol=2e-5 * max(1.0, np.abs(standard).max()))


@pytest.mark.parametrize("name,make,shape,scale,shift", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("training", [False, True])
def test_gradient_kernel_equals_autodiff_of_the_standard_layer(name, make, shape, scale, shift, training):
    """Input and affine gradients of every gradient kernel against MindSpore's autodiff of its own ops, eagerly and
    compiled, in inference (guidance) and in training (the cells take the kernels in both)."""
    if library_path() is None:
        pytest.skip(unavailable_reason())
    cell = make()
    assert cell.fused
    cell.set_train(training)
    x = _t(*shape, scale=scale, shift=shift)
    w = _t(*cell(x).shape)
    params = cell.trainable_params()

    def loss(v):
        return (cell(v) * w).sum()

    grad = ms.grad(loss, grad_position=0, weights=params if params else None)
    _standard(cell, True)
    standard = grad(x)
    _standard(cell, False)
    for fused in (grad(x), ms.jit(grad)(x)):
        for a, b in zip(_flat(fused), _flat(standard), strict=True):
            assert float(np.abs(b.asnumpy()).max()) > 0
            scale = max(1.0, float(np.abs(b.asnumpy()).max()))
            np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), atol=1e-4 * scale, rtol=1e-4)


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [leaf for o in out for leaf in _flat(o)]
    return [out]


class TwoNorms(nn.Cell):
    def __init__(self):
        super().__init__()
        self.a = _affine(GroupNorm(4, 16, eps=1e-5, silu=True), 16)
        self.b = _affine(GroupNorm(16, 16, eps=1e-2, silu=False), 16)

    def construct(self, x):
        return self.b(self.a(x))


def test_norms_with_different_settings_keep_their_own_gradient_in_one_graph():
    if library_path() is None:
        pytest.skip(unavailable_reason())
    net, x, w = TwoNorms(), _t(2, 16, 6, scale=2.0), _t(2, 16, 6)

    def loss(v):
        return (net(v) * w).sum()

    _standard(net, True)
    standard = ms.grad(loss)(x).asnumpy()
    _standard(net, False)
    np.testing.assert_allclose(ms.jit(ms.grad(loss))(x).asnumpy(), standard, atol=1e-4)


def test_switched_off_by_environment(tmp_path):
    code = ("import mindspore; from prediff_models.kernels import Gelu, library_path, unavailable_reason; "
            "print(library_path(), Gelu().fused, unavailable_reason())")
    env = {**os.environ, "PREDIFF_KERNELS": "0", "PREDIFF_KERNEL_DIR": str(tmp_path / "k")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split()[:2] == ["None", "False"]
    assert "PREDIFF_KERNELS=0" in out.stdout
    assert not (tmp_path / "k").exists()


def test_build_goes_to_the_cache_dir_by_source_hash(tmp_path):
    if library_path() is None:
        pytest.skip(unavailable_reason())
    code = "from prediff_models.kernels import library_path; print(library_path())"
    env = {**os.environ, "PREDIFF_KERNEL_DIR": str(tmp_path / "k")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    built = Path(out.stdout.strip())
    assert built.parent == tmp_path / "k" and built.name.startswith("cpu_kernels-") and built.suffix == ".so"
    assert [p.name for p in (tmp_path / "k").iterdir()] == [built.name]  # no temporary file left behind


def test_info_reports_the_kernels():
    from typer.testing import CliRunner

    from prediff.cli.app import app

    result = CliRunner().invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    assert facts["cpu_kernels"] == (library_path() or f"off ({unavailable_reason()})")
    from prediff.cli.info import _kernel_paths
    from prediff_models.kernels import uses_avx512
    from prediff_models.kernels.dense import gemm_enabled

    assert facts["cpu_kernel_paths"] == _kernel_paths(library_path() is not None, uses_avx512(), gemm_enabled())
    assert _kernel_paths(False, True, True) == "MindSpore's own kernels"
    assert _kernel_paths(True, False, False) == "AVX2 convolution tiles; linear layers on MindSpore's matmul"
    assert _kernel_paths(True, True, True) == ("AVX-512 convolution tiles; linear layers and convolution weight "
                                               "gradients on the GEMM kernels")


def test_other_dtypes_take_the_standard_path():
    x = Tensor(np.linspace(-3, 3, 24, dtype=np.float16).reshape(4, 6))
    cell = Gelu()
    np.testing.assert_array_equal(ms.jit(cell.construct)(x).asnumpy(), ms.ops.gelu(x).asnumpy())


@pytest.mark.parametrize("compiled", [False, True])
def test_keyed_dropout_kernel_keeps_the_standard_masks_forward_and_backward(compiled):
    """The fused keyed dropout drops exactly the elements of the standard formulation (same key, same layer) and
    scales the rest the same, in the output and in the gradient (which it recomputes instead of storing a mask)."""
    if library_path() is None:
        pytest.skip(unavailable_reason())
    from mindspore import Parameter

    from prediff_models.keyed_dropout import KeyedDropout

    key = Parameter(Tensor(np.uint32(12345)), name="key", requires_grad=False)
    fused, standard = KeyedDropout(0.3, 2, key), KeyedDropout(0.3, 2, key)
    standard._kernel = None
    assert fused._kernel is not None
    x, w = _t(3, 37, 5, scale=2.0, shift=0.5), _t(3, 37, 5)

    def value_and_grad(cell):
        def loss(v):
            return (cell(v)[0] * w).sum()

        fn = ms.value_and_grad(loss)
        return fn if not compiled else ms.jit(fn)

    (v_fused, g_fused), (v_std, g_std) = value_and_grad(fused)(x), value_and_grad(standard)(x)
    out_fused, out_std = fused(x)[0].asnumpy(), standard(x)[0].asnumpy()
    np.testing.assert_allclose(out_fused, out_std, rtol=1e-7, atol=0)
    kept = out_std != 0
    assert 0.6 < kept.mean() < 0.8  # p = 0.3
    np.testing.assert_array_equal(g_fused.asnumpy() != 0, kept)
    np.testing.assert_allclose(g_fused.asnumpy(), g_std.asnumpy(), rtol=1e-7, atol=0)
    assert float(v_fused.asnumpy()) == pytest.approx(float(v_std.asnumpy()), rel=1e-5)
    key.set_data(Tensor(np.uint32(54321)))  # another key, another mask
    assert not np.array_equal(fused(x)[0].asnumpy() != 0, kept)
