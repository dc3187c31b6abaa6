"""Drop-in `Conv3d` / `Conv2d` cells that run the direct 3×3(×3) convolution kernel (`conv_kernels.cc`).

The kernel covers the convolutions that carry most of the paper-size UNet's FLOPs: 3×3×3 (and 3×3) kernels,
stride 1, dilation 1, one group, zero padding 1 on every side, float32, an output width that is a multiple of 8;
and the VAE encoder's stride-2 3×3 downsampling (padding 0 before, 1 after, on both axes).
In inference at bf16 precision (`precision`) the same convolutions run with bf16 operands where the width allows
(`Conv3x3BF16`, `Conv3x3Stride2BF16`, `UpsampleConv3x3BF16`).
Any other configuration, dtype or width, and every cell when the kernel library is unavailable, runs MindSpore's
own convolution — the same function, which `tests/test_kernels_conv.py` compares against. The parameters are those
of `nn.Conv3d` / `nn.Conv2d` (`weight` (C_out, C_in, [3,] 3, 3), `bias` (C_out)), so checkpoints and the official
weight conversion are unchanged.

Gradients: with respect to the input, the same kernel with the weights' channel axes swapped and their taps
reversed; with respect to the weight, a second kernel (`Conv3x3WeightGrad`: for each output channel, input channel
and tap, the sum over all output positions of the incoming gradient times the shifted input); the bias gradient is
the sum of the incoming gradient over everything but its channel axis.
"""
from __future__ import annotations

from mindspore import nn, ops
from mindspore.common import dtype as mstype

from .bf16 import keep_bf16_weight
from .library import custom_op
from .stash import LOAD, OFF, STORE, store_op, stored


def convolution_shape(x, w, *rest):
    return [x[0], w[0], *x[2:]]


def _input_grad_shape(dy, w):
    return [dy[0], w[1], *dy[2:]]


def _weight_grad_shape(x, dy, w):
    return w


def convolution_grads():
    """`grads(x, w, dout) -> (∂x, ∂w, ∂b)` of the stride-1 3×3(×3) convolution on the gradient kernels, or None
    without the kernel library. Shape-generic: the bias gradient sums over every axis but the channels."""
    input_grad = custom_op("Conv3x3InputGrad", out_shape=_input_grad_shape)
    weight_grad = custom_op("Conv3x3WeightGrad", out_shape=_weight_grad_shape)
    if input_grad is None or weight_grad is None:
        return None

    def grads(x, w, dout):
        not_channels = (0,) + tuple(range(2, len(dout.shape)))
        return input_grad(dout, w), weight_grad(x, dout, w), dout.sum(axis=not_channels)

    return grads


def _kernel_with_grads():
    """The forward op with its gradient kernels as bprop; None without the kernel library. MindSpore keys custom
    ops by their function name, so every cell's op shares the bprop of the first one built: it must serve the 2-D and
    the 3-D convolution alike."""
    grads = convolution_grads()
    if grads is None:
        return None

    def bprop(x, w, b, out, dout):
        return grads(x, w, dout)

    return custom_op("Conv3x3", bprop, out_shape=convolution_shape)


def _stride2_shape(x, w, *rest):
    return [x[0], w[0], x[2] // 2, x[3] // 2]


def _stride2_kernel_with_grads():
    """The stride-2 3×3 convolution with a zero row and column appended (`Conv3x3Stride2`), or None without the
    library. Its gradients are MindSpore's own, of the same function (pad, then a stride-2 `ops.conv2d`): shape-
    generic, as the shared bprop must be."""
    def reference(x, w):
        return ops.conv2d(ops.pad(x, (0, 1, 0, 1)), w, stride=2)

    reference_grads = ops.GradOperation(get_all=True, sens_param=True)(reference)

    def bprop(x, w, b, out, dout):
        dx, dw = reference_grads(x, w, dout)
        return dx, dw, dout.sum(axis=(0, 2, 3))

    return custom_op("Conv3x3Stride2", bprop, out_shape=_stride2_shape)


def bf16_conv_op():
    """The stride-1 3×3(×3) convolution with bf16 operands (`Conv3x3BF16`): x float32, w bf16 bits as uint16 (like the
    weight), b → y float32; inference only. None without the kernel library."""
    return custom_op("Conv3x3BF16", out_shape=convolution_shape)


def _bf16_width_ok(h: int, w: int) -> bool:
    """Output widths the bf16 tiles cover (as `bf16_width_ok` in conv_kernels.cc): runs of 16, or two rows of 8."""
    return w % 16 == 0 or (w == 8 and (h * w) % 16 == 0)


def _bf16_setting(cell, precision: str, make_op, copy_weight: bool = True) -> bool:
    """Shared by the cells' `set_precision`: the bf16 op (made once) and, when the op takes one, the bf16 weight."""
    cell.bf16 = False
    if precision == "bf16" and cell.fused:
        cell._bf16_op = cell._bf16_op or make_op()
        if cell._bf16_op is not None:
            if copy_weight:
                keep_bf16_weight(cell)
            cell.bf16 = True
    return cell.bf16


def _ints(value) -> tuple:
    """A cell's size setting (an int or a tuple of them) as a tuple of ints."""
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),)


def _eligible_stride2(cell) -> bool:
    """The VAE's downsampling convolution: 3×3, stride 2, padding (top 0, bottom 1, left 0, right 1), 2-D."""
    return (cell.has_bias and cell.group == 1 and cell.pad_mode == "pad" and _ints(cell.kernel_size) == (3, 3)
            and _ints(cell.stride) == (2, 2) and _ints(cell.dilation) == (1, 1)
            and _ints(cell.padding) == (0, 1, 0, 1) and len(cell.weight.shape) == 4)


def _eligible(cell, ndim: int) -> bool:
    """Whether the cell's configuration is one the kernel computes (3×3 taps, stride 1, padding 1, one group)."""
    def all_equal(value, expected):
        return set(_ints(value)) == {expected}

    return (cell.has_bias and cell.group == 1 and cell.pad_mode == "pad" and all_equal(cell.kernel_size, 3)
            and all_equal(cell.stride, 1) and all_equal(cell.dilation, 1) and all_equal(cell.padding, 1)
            and len(cell.weight.shape) == ndim)


def conv_load_op():
    """`StashLoadConv(x, w, b, slot)` → the stored convolution output, with the convolution's gradients."""
    grads = convolution_grads()
    if grads is None:
        return None

    def bprop(x, w, b, slot, out, dout):
        dx, dw, db = grads(x, w, dout)
        return dx, dw, db, ops.zeros_like(slot)

    return custom_op("StashLoadConv", bprop, out_shape=convolution_shape)


class Conv3d(nn.Conv3d):
    """`nn.Conv3d` on (N, C_in, T, H, W) → (N, C_out, T, H, W), on the direct kernel where it applies. On the
    kernel it can also keep its output for a later gradient graph (`stash.ActivationStash`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._kernel = _kernel_with_grads() if _eligible(self, 5) else None
        self.fused = self._kernel is not None
        self.stash_mode = OFF
        self._store = self._load = self.stash_slot = None
        self.bf16, self._bf16_op = False, None

    def set_precision(self, precision: str) -> bool:
        """"bf16": in inference, widths the bf16 tiles cover run `Conv3x3BF16` on a bf16 copy of the weight made
        now; "fp32": float32 again. Returns whether the layer now computes in bf16."""
        return _bf16_setting(self, precision, bf16_conv_op)

    def can_stash(self) -> bool:
        return self.fused

    def enable_stash(self) -> None:
        if self._store is None:
            self._store, self._load = store_op(), conv_load_op()

    def construct(self, x):
        if not self.fused or x.dtype != mstype.float32 or x.shape[-1] % 8:
            return super().construct(x)
        if self.bf16 and not self.training and _bf16_width_ok(x.shape[-2], x.shape[-1]):
            return self._bf16_op(x, self.weight_bf16, self.bias)
        if self.stash_mode == LOAD:
            return self._load(x, self.weight, self.bias, self.stash_slot)
        y = self._kernel(x, self.weight, self.bias)
        if self.stash_mode == STORE:
            y = stored(self._store, y, self.stash_slot)
        return y


# Conv2d repeats Conv3d's two methods rather than sharing them through a mixin: MindSpore's graph parser resolves
# `super().construct` inside a mixin back to the mixin (infinite recursion, measured).
class Conv2d(nn.Conv2d):
    """`nn.Conv2d` on (N, C_in, H, W) → (N, C_out, H', W'), on the direct kernel where it applies: the 3×3 stride-1
    "same" convolution, and the VAE's downsampling one (stride 2, one zero row and column appended; even H and W,
    W/2 a multiple of 8)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stride = 1
        if _eligible(self, 4):
            self._kernel = _kernel_with_grads()
        elif _eligible_stride2(self):
            self._kernel, self._stride = _stride2_kernel_with_grads(), 2
        else:
            self._kernel = None
        self.fused = self._kernel is not None
        self.bf16, self._bf16_op = False, None

    def set_precision(self, precision: str) -> bool:
        """As `Conv3d.set_precision`; the stride-2 convolution runs `Conv3x3Stride2BF16` (output widths a multiple
        of 16)."""
        if self._stride == 2:
            return _bf16_setting(self, precision, lambda: custom_op("Conv3x3Stride2BF16", out_shape=_stride2_shape))
        return _bf16_setting(self, precision, bf16_conv_op)

    def construct(self, x):
        if (not self.fused or x.dtype != mstype.float32 or x.shape[-1] % (8 * self._stride)
                or x.shape[-2] % self._stride):
            return super().construct(x)
        if self.bf16 and not self.training:
            if self._stride == 1 and _bf16_width_ok(x.shape[-2], x.shape[-1]):
                return self._bf16_op(x, self.weight_bf16, self.bias)
            if self._stride == 2 and (x.shape[-1] // 2) % 16 == 0:
                return self._bf16_op(x, self.weight_bf16, self.bias)
        return self._kernel(x, self.weight, self.bias)


def _upsample_forward_shape(x, w, *rest):
    return [x[0], w[0], 2 * x[2], 2 * x[3]]


def _upsample_kernel_with_grads():
    """Nearest ×2 upsampling fused with the 3×3 convolution (`UpsampleConv3x3`), or None without the library.

    Its gradients go through the upsampled input, with the plain convolution's gradient kernels: ∂w correlates the
    (recomputed) upsampled input with ∂y; ∂x sums the upsampled input's gradient over each 2×2 block it was copied
    to."""
    input_grad = custom_op("Conv3x3InputGrad", out_shape=_input_grad_shape)
    weight_grad = custom_op("Conv3x3WeightGrad", out_shape=_weight_grad_shape)
    if input_grad is None or weight_grad is None:
        return None

    def bprop(x, w, b, out, dout):
        n, c, h, wd = x.shape
        up = ops.interpolate(x, size=(2 * h, 2 * wd), mode="nearest")
        dup = input_grad(dout, w)
        dx = dup.reshape(n, c, h, 2, wd, 2).sum(axis=(3, 5))
        return dx, weight_grad(up, dout, w), dout.sum(axis=(0, 2, 3))

    return custom_op("UpsampleConv3x3", bprop, out_shape=_upsample_forward_shape)


class UpsampleConv2d(nn.Conv2d):
    """Nearest-neighbour ×2 upsampling then a 3×3, stride-1, padding-1 `nn.Conv2d`: (N, C_in, H, W) →
    (N, C_out, 2H, 2W).

    On the kernel each output pixel costs 4 taps instead of 9 (the 3×3 taps that read the same input pixel are
    summed first) and the upsampled input is never built; elsewhere it is `ops.interpolate` + the convolution.
    Parameters are those of the `nn.Conv2d` it wraps (`weight` (C_out, C_in, 3, 3), `bias`)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, pad_mode="pad", padding=1, has_bias=True)
        self._kernel = _upsample_kernel_with_grads()
        self.fused = self._kernel is not None
        self.bf16, self._bf16_op = False, None

    def set_precision(self, precision: str) -> bool:
        """"bf16": in inference, input widths that are a multiple of 16 run `UpsampleConv3x3BF16`, which sums the
        phase weights from the float32 weight and rounds them (no weight copy); "fp32": float32 again."""
        return _bf16_setting(self, precision,
                             lambda: custom_op("UpsampleConv3x3BF16", out_shape=_upsample_forward_shape), False)

    def construct(self, x):
        if not self.fused or x.dtype != mstype.float32 or x.shape[-1] % 8:
            _, _, h, w = x.shape
            return super().construct(ops.interpolate(x, size=(2 * h, 2 * w), mode="nearest"))
        if self.bf16 and not self.training and x.shape[-1] % 16 == 0:
            return self._bf16_op(x, self.weight, self.bias)
        return self._kernel(x, self.weight, self.bias)
