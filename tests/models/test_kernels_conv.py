"""The direct 3×3(×3) convolution kernel (models/kernels/conv.py, conv_kernels.cc): forward and the gradients to the
input, weight and bias equal MindSpore's own convolution (the same cell with `fused` off), compiled, on the shapes
that exercise its edges — output channels not a multiple of the 6-channel (AVX2) or 12-channel (AVX-512) block,
input channels beyond one reduction chunk, an odd number of 8- or 16-wide runs, a batch, weight-gradient reductions spanning chunks and samples — and
configurations it does not cover run the standard convolution."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, nn

from prediff_models.kernels import Conv2d, Conv3d, UpsampleConv2d, library_path

pytestmark = pytest.mark.skipif(library_path() is None, reason="kernel library unavailable")
rng = np.random.default_rng(3)


def _values_and_grads(cell, x, probe):
    """(y, dL/dx, dL/dw, dL/db) of L = sum(cell(x) · probe), compiled."""
    def loss(v):
        return (cell(v) * probe).sum()

    def forward(v):  # a new function per call: a compiled `cell.construct` would be reused after `fused` changes
        return cell(v)

    grad = ms.jit(ms.value_and_grad(loss, grad_position=0, weights=(cell.weight, cell.bias)))
    _, (dx, (dw, db)) = grad(x)
    y = ms.jit(forward)(x)
    return [t.asnumpy().copy() for t in (y, dx, dw, db)]


def _assert_kernel_matches_mindspore(cell, x, probe):
    """The cell on the kernel and (`fused` off) on MindSpore's convolution: equal outputs and gradients; returns the
    kernel's (y, dx, dw, db)."""
    assert cell.fused
    fused = _values_and_grads(cell, x, probe)
    cell.fused = False
    standard = _values_and_grads(cell, x, probe)
    for name, a, b in zip(("y", "dx", "dw", "db"), fused, standard):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5 * max(1.0, np.abs(b).max()), err_msg=name)
    return fused


@pytest.mark.parametrize("cls, cin, cout, shape", [
    (Conv3d, 5, 11, (2, 5, 3, 4, 16)),      # 6 + 5 output channels, batch 2
    (Conv3d, 70, 13, (1, 70, 3, 2, 8)),     # two reduction chunks (64 + 6), 6 + 6 + 1 output channels
    (Conv3d, 3, 6, (1, 3, 1, 3, 8)),        # one frame, 3 runs of 8: the odd last run
    (Conv2d, 7, 9, (3, 7, 5, 16)),          # 2-D, batch 3
    # widths that are a multiple of 16 take the 12-channel AVX-512 micro-tile on CPUs that have it
    (Conv3d, 3, 14, (1, 3, 1, 3, 16)),      # 12 + 2 output channels, 3 runs of 16: the odd last run
    (Conv3d, 70, 25, (1, 70, 2, 2, 32)),    # two reduction chunks, 12 + 12 + 1 output channels
    # width 8 with rows of a multiple of 16 positions: AVX-512 runs over two rows of shifted copies
    (Conv3d, 20, 25, (2, 20, 3, 8, 8)),     # the UNet's second level in small: batch 2, 12 + 12 + 1 channels
    (Conv2d, 70, 13, (1, 70, 6, 8)),        # 2-D, two reduction chunks, 3 runs of 16: the odd last run
    # more than 128 output channels: the weight gradient on the AVX-512 GEMM where the CPU has it. 2 × 384 positions
    # = 768 reduction indices, so the second 512-chunk starts inside the second sample; 133 = 11 × 12 + 1 rows of
    # dw, 5 × 27 = 135 = 4 × 32 + 7 columns
    (Conv3d, 5, 133, (2, 5, 3, 8, 16)),
    (Conv2d, 3, 130, (3, 3, 8, 16)),        # 2-D, batch 3: 27 columns (one partial panel), 10 + 10 rows
])
def test_direct_convolution_equals_mindspore(cls, cin, cout, shape):
    cell = cls(cin, cout, 3, pad_mode="pad", padding=1, has_bias=True)
    cell.bias.set_data(Tensor(rng.standard_normal(cout).astype(np.float32)))
    x = Tensor(rng.standard_normal(shape).astype(np.float32))
    probe = Tensor(rng.standard_normal((shape[0], cout, *shape[2:])).astype(np.float32))
    _assert_kernel_matches_mindspore(cell, x, probe)
    # a known answer as well: a centred one-hot 3×3(×3) kernel on the first input channel copies it (a new cell:
    # a compiled graph keeps the parameter data it was compiled with when `set_data` replaces it afterwards)
    cell = cls(cin, cout, 3, pad_mode="pad", padding=1, has_bias=True)
    w = np.zeros(cell.weight.shape, np.float32)
    w[:, 0][(slice(None),) + (1,) * (w.ndim - 2)] = 1.0
    cell.weight.set_data(Tensor(w))
    cell.bias.set_data(Tensor(np.zeros(cout, np.float32)))
    y = ms.jit(cell.construct)(x).asnumpy()
    np.testing.assert_array_equal(y, np.repeat(x.asnumpy()[:, :1], cout, axis=1))


@pytest.mark.parametrize("make, shape", [
    (lambda: Conv2d(4, 6, 3, stride=2, pad_mode="pad", padding=1, has_bias=True), (1, 4, 8, 16)),
    (lambda: Conv3d(4, 6, 1, has_bias=True), (1, 4, 2, 3, 8)),
    (lambda: Conv2d(4, 6, 3, pad_mode="pad", padding=1, has_bias=False), (1, 4, 8, 8)),
])
def test_configurations_outside_the_kernel_run_mindspore(make, shape):
    cell = make()
    assert not cell.fused
    x = Tensor(rng.standard_normal(shape).astype(np.float32))
    base = nn.Conv2d if isinstance(cell, nn.Conv2d) and not isinstance(cell, nn.Conv3d) else nn.Conv3d
    assert isinstance(cell, base)
    np.testing.assert_array_equal(cell(x).asnumpy(), base.construct(cell, x).asnumpy())


def test_width_not_a_multiple_of_8_runs_mindspore():
    cell = Conv2d(3, 5, 3, pad_mode="pad", padding=1, has_bias=True)
    assert cell.fused
    x = Tensor(rng.standard_normal((2, 3, 6, 12)).astype(np.float32))
    np.testing.assert_allclose(cell(x).asnumpy(), nn.Conv2d.construct(cell, x).asnumpy(), rtol=1e-6, atol=1e-6)


def test_networks_use_the_kernel():
    import prediff_models as models
    from prediff.config import load_config

    cfg = load_config("tiny")
    for component in ("unet", "vae"):
        net = models.build(component, cfg.model_kwargs(component))
        convs = [c for _, c in net.cells_and_names() if isinstance(c, (Conv2d, Conv3d))]
        assert any(c.fused for c in convs), component
        same = [tuple(c.weight.shape[2:]) in ((3, 3), (3, 3, 3)) and c.stride in ((1, 1), (1, 1, 1))
                and c.padding in (1, (1, 1, 1, 1)) for c in convs]
        down = [tuple(c.weight.shape[2:]) == (3, 3) and c.stride == (2, 2) and c.padding == (0, 1, 0, 1)
                for c in convs]
        assert all(c.fused == (s or d) for c, s, d in zip(convs, same, down)), component
        assert any(down) == (component == "vae"), component


def test_dense_bias_gradient_equals_mindspore():
    """`kernels.Dense` (the bias gradient as a ones-row matmul) against `nn.Dense`: values and all three gradients."""
    from prediff_models.kernels import Dense

    cell = Dense(24, 40)
    cell.bias.set_data(Tensor(rng.standard_normal(40).astype(np.float32)))
    x = Tensor(rng.standard_normal((3, 7, 24)).astype(np.float32))
    probe = Tensor(rng.standard_normal((3, 7, 40)).astype(np.float32))
    assert cell.fused
    fused = _values_and_grads(cell, x, probe)
    cell.fused = False
    standard = _values_and_grads(cell, x, probe)
    for name, a, b in zip(("y", "dx", "dw", "db"), fused, standard):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)
    # the bias gradient of sum(y · probe) is the probe summed over every row
    np.testing.assert_allclose(fused[3], probe.asnumpy().sum(axis=(0, 1)), rtol=1e-5, atol=1e-5)


def test_2d_and_3d_cells_in_one_graph_keep_their_own_gradients():
    """MindSpore shares one custom op (and its bprop) between every cell of the same kernel function: a Conv2d and a
    Conv3d differentiated in the same compiled graph must both get bias gradients of their own rank."""
    pair = nn.CellList([Conv2d(3, 8, 3, pad_mode="pad", padding=1, has_bias=True),
                        Conv3d(3, 8, 3, pad_mode="pad", padding=1, has_bias=True)])  # unique parameter names
    c2, c3 = pair[0], pair[1]
    x2 = Tensor(rng.standard_normal((2, 3, 4, 8)).astype(np.float32))
    x3 = Tensor(rng.standard_normal((2, 3, 2, 4, 8)).astype(np.float32))

    def loss(a, b):
        return c2(a).sum() + (c3(b) * 2.0).sum()

    params = (c2.weight, c2.bias, c3.weight, c3.bias)
    grads = ms.jit(ms.grad(loss, grad_position=None, weights=params))(x2, x3)
    assert [tuple(g.shape) for g in grads] == [tuple(p.shape) for p in params]
    np.testing.assert_allclose(grads[1].asnumpy(), np.full(8, 2 * 4 * 8, np.float32))
    np.testing.assert_allclose(grads[3].asnumpy(), np.full(8, 2.0 * 2 * 2 * 4 * 8, np.float32))


@pytest.mark.parametrize("cin, cout, shape", [
    (5, 11, (2, 5, 4, 8)),      # 6 + 5 output channels, batch 2
    (70, 13, (1, 70, 3, 16)),   # two reduction chunks, 6 + 6 + 1 output channels
    (3, 6, (1, 3, 3, 8)),       # 3 runs of 8 per phase: the odd last run
])
def test_upsampling_convolution_equals_interpolate_then_convolution(cin, cout, shape):
    """The fused nearest-×2 + 3×3 kernel (4 summed taps per output phase) against `ops.interpolate` + MindSpore's
    convolution with the same parameters: output and the three gradients."""
    cell = UpsampleConv2d(cin, cout)
    cell.bias.set_data(Tensor(rng.standard_normal(cout).astype(np.float32)))
    x = Tensor(rng.standard_normal(shape).astype(np.float32))
    probe = Tensor(rng.standard_normal((shape[0], cout, 2 * shape[2], 2 * shape[3])).astype(np.float32))
    fused = _assert_kernel_matches_mindspore(cell, x, probe)
    assert fused[0].shape == (shape[0], cout, 2 * shape[2], 2 * shape[3])


def test_upsampling_convolution_known_answer():
    """A kernel whose only non-zero tap is the top-left one of input channel 0 shifts the upsampled image by one
    pixel down and right: y[2i+a, 2j+b] = x[(2i+a-1)//2, (2j+b-1)//2], zero on the first row and column."""
    cell = UpsampleConv2d(2, 3)
    w = np.zeros(cell.weight.shape, np.float32)
    w[:, 0, 0, 0] = 1.0
    cell.weight.set_data(Tensor(w))
    cell.bias.set_data(Tensor(np.zeros(3, np.float32)))
    x = rng.standard_normal((1, 2, 3, 8)).astype(np.float32)
    y = ms.jit(cell.construct)(Tensor(x)).asnumpy()
    up = x[:, :1].repeat(2, axis=2).repeat(2, axis=3)
    expected = np.zeros_like(up)
    expected[:, :, 1:, 1:] = up[:, :, :-1, :-1]
    np.testing.assert_array_equal(y, np.repeat(expected, 3, axis=1))


def test_vae_decoder_upsamples_on_the_kernel():
    import prediff_models as models
    from prediff.config import load_config

    vae = models.build("vae", load_config("tiny").model_kwargs("vae"))
    upsamplers = [c for _, c in vae.cells_and_names() if isinstance(c, UpsampleConv2d)]
    assert upsamplers and all(c.fused for c in upsamplers)


@pytest.mark.parametrize("cin, cout, shape", [
    (16, 13, (2, 16, 8, 16)),    # 8-wide output rows (AVX2 tile), 6 + 6 + 1 output channels, batch 2
    (70, 25, (1, 70, 6, 32)),    # 16-wide output rows (the AVX-512 tile where present), two reduction chunks
])
def test_stride2_downsampling_equals_mindspore(cin, cout, shape):
    """The VAE's downsampling convolution (3×3, stride 2, one zero row and column appended) on the kernel (input
    split into its four parity planes) against MindSpore's: output and the three gradients."""
    cell = Conv2d(cin, cout, 3, stride=2, pad_mode="pad", padding=(0, 1, 0, 1), has_bias=True)
    cell.bias.set_data(Tensor(rng.standard_normal(cout).astype(np.float32)))
    x = Tensor(rng.standard_normal(shape).astype(np.float32))
    probe = Tensor(rng.standard_normal((shape[0], cout, shape[2] // 2, shape[3] // 2)).astype(np.float32))
    _assert_kernel_matches_mindspore(cell, x, probe)
    # a known answer: the bottom-right tap alone reads input pixel (2i+2, 2j+2), zero past the last row/column
    cell = Conv2d(cin, cout, 3, stride=2, pad_mode="pad", padding=(0, 1, 0, 1), has_bias=True)
    w = np.zeros(cell.weight.shape, np.float32)
    w[:, 0, 2, 2] = 1.0
    cell.weight.set_data(Tensor(w))
    cell.bias.set_data(Tensor(np.zeros(cout, np.float32)))
    y = ms.jit(cell.construct)(x).asnumpy()
    padded = np.pad(x.asnumpy()[:, :1], ((0, 0), (0, 0), (0, 1), (0, 1)))
    np.testing.assert_array_equal(y, np.repeat(padded[:, :, 2::2, 2::2], cout, axis=1))


def test_vae_encoder_downsamples_on_the_kernel():
    import prediff_models as models
    from prediff.config import load_config
    from prediff_models.vae.blocks import Downsample2D

    vae = models.build("vae", load_config("tiny").model_kwargs("vae"))
    downsamplers = [c.conv for _, c in vae.cells_and_names() if isinstance(c, Downsample2D)]
    assert downsamplers and all(c.fused for c in downsamplers)


@pytest.mark.parametrize("make, shape", [
    (lambda: Conv2d(64, 6, 3, pad_mode="pad", padding=1, has_bias=True), (20, 64, 128, 128)),
    (lambda: UpsampleConv2d(64, 6), (48, 64, 64, 64)),
    (lambda: Conv2d(64, 6, 3, stride=2, pad_mode="pad", padding=(0, 1, 0, 1), has_bias=True), (20, 64, 128, 128)),
], ids=["3x3", "upsampling", "stride 2"])
def test_large_batches_run_in_passes_of_frames(make, shape):
    """Inputs whose scratch would pass 64 MiB are convolved a few frames at a time (here 2-3 passes): the result is
    MindSpore's convolution of the whole batch."""
    ours, theirs = make(), make()
    theirs.weight.set_data(ours.weight.data)
    theirs.bias.set_data(ours.bias.data)
    theirs.fused = False
    x = Tensor(rng.standard_normal(shape).astype(np.float32))
    np.testing.assert_allclose(ms.jit(ours.construct)(x).asnumpy(), ms.jit(theirs.construct)(x).asnumpy(),
                               rtol=1e-4, atol=2e-5)
