"""Earthformer networks: official parity, parameter tree and counts, padding, graph mode."""
import json

import numpy as np
import pytest

import prediff_models as models
import mindspore as ms
from mindspore import Tensor

from prediff_models.earthformer.cuboid_attention import CuboidSelfAttentionLayer, relative_position_index
from prediff_models.earthformer.sampling_layers import PatchMerging3D
from prediff.config import load_config


def _fixture(official_dir, name):
    z = np.load(official_dir / f"{name}.npz")
    net = models.build("unet" if name == "unet" else "align", json.loads(str(z["config_json"])))
    models.load_official_state_dict(net, {k[len("param/"):]: z[k] for k in z.files if k.startswith("param/")})
    return net, z


def test_unet_matches_official(official_dir):
    net, z = _fixture(official_dir, "unet")
    eps = net(Tensor(z["in/x"]), Tensor(z["in/t"].astype(np.int32)), Tensor(z["in/cond"])).asnumpy()
    assert eps.shape == z["out/eps"].shape
    assert np.abs(eps - z["out/eps"]).max() <= 1e-4


def test_alignment_net_matches_official(official_dir):
    net, z = _fixture(official_dir, "align")
    pred = net(Tensor(z["in/zt"]), Tensor(z["in/t"].astype(np.int32))).asnumpy()
    assert pred.shape == z["out/pred"].shape == (2, 2, 1)
    assert np.abs(pred - z["out/pred"]).max() <= 1e-4


def test_official_tree_round_trips(official_dir):
    net, z = _fixture(official_dir, "unet")
    exported = models.official_state_dict(net)
    params = {k[len("param/"):]: z[k] for k in z.files if k.startswith("param/")}
    assert set(exported) == set(params)
    for key, value in params.items():
        np.testing.assert_array_equal(exported[key].reshape(value.shape), value)


def test_buffer_geometry_mismatch_is_reported(official_dir):
    z = np.load(official_dir / "unet.npz")
    cfg = json.loads(str(z["config_json"]))
    state = {k[len("param/"):]: z[k] for k in z.files if k.startswith("param/")}
    key = "down_self_blocks.0.0.attn_l.0.relative_position_index"
    state[key] = state[key][::-1].copy()
    net = models.build("unet", cfg)
    with pytest.raises(models.StateDictMismatch, match="relative_position_index"):
        models.load_official_state_dict(net, state)


def test_paper_parameter_counts():
    cfg = load_config("sevirlr")
    unet = models.build("unet", cfg.model_kwargs("unet"))
    align = models.build("align", cfg.model_kwargs("align"))
    assert models.count_parameters(unet) == 136_817_538
    assert models.count_parameters(align) == 8_937_033
    assert len(models.official_state_dict(unet)) == 688  # 640 tensors + 48 relative_position_index buffers
    assert len(models.official_state_dict(align)) == 125


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_presets_build_with_right_shapes(preset):
    cfg = load_config(preset)
    unet, align = models.build("unet", cfg.model_kwargs("unet")), models.build("align", cfg.model_kwargs("align"))
    t_in, h, w, c = cfg.unet.input_shape
    t_out = cfg.unet.target_shape[0]
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, t_out, h, w, c)).astype(np.float32))
    cond = Tensor(rng.standard_normal((2, t_in, h, w, c)).astype(np.float32))
    t = Tensor(np.array([0, 999], np.int32))
    assert unet(x, t, cond).shape == (2, t_out, h, w, c)
    assert align(x, t).shape == (2, cfg.align.out_len, 1)


def test_graph_mode_equals_pynative(official_dir):
    net, z = _fixture(official_dir, "unet")
    args = (Tensor(z["in/x"]), Tensor(z["in/t"].astype(np.int32)), Tensor(z["in/cond"]))

    def forward(x, t, cond):
        return net(x, t, cond)

    eager = net(*args).asnumpy()
    compiled = ms.jit(forward)(*args).asnumpy()
    np.testing.assert_allclose(compiled, eager, atol=1e-6)
    assert np.abs(eager).max() > 0.1  # a real output, not the zero of a fresh final_proj


def test_relative_position_index_known_answer():
    idx = relative_position_index((1, 2, 2))
    # positions (h, w) = (0,0), (0,1), (1,0), (1,1); table is 1·3·3 = 9 rows; idx = (Δh+1)·3 + (Δw+1)
    assert idx.tolist() == [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]


def test_attention_zero_padding_equals_explicit_padding():
    """A 10×10 input with 4×4 cuboids is padded to 12×12 after the LayerNorm: the same as feeding the zero-padded
    input to a 12×12 layer (LayerNorm maps a zero vector to its beta, which is 0)."""
    ms.set_seed(0)
    small = CuboidSelfAttentionLayer(8, 2, (1, 4, 4), (1, 10, 10), proj_linear_init_mode="0")
    big = CuboidSelfAttentionLayer(8, 2, (1, 4, 4), (1, 12, 12), proj_linear_init_mode="0")
    for (_, a), (_, b) in zip(small.parameters_and_names(), big.parameters_and_names()):
        b.set_data(a.value())
    assert small.pads == (0, 2, 2)
    x = np.random.default_rng(1).standard_normal((2, 1, 10, 10, 8)).astype(np.float32)
    padded = np.zeros((2, 1, 12, 12, 8), np.float32)
    padded[:, :, :10, :10] = x
    out_small = small(Tensor(x)).asnumpy()
    out_big = big(Tensor(padded)).asnumpy()
    assert out_small.shape == x.shape
    np.testing.assert_allclose(out_small, out_big[:, :, :10, :10], atol=1e-5)


def test_patch_merging_pads_odd_sizes_and_unet_handles_them():
    merge = PatchMerging3D(4, 8)
    x = np.random.default_rng(2).standard_normal((1, 2, 5, 5, 4)).astype(np.float32)
    padded = np.zeros((1, 2, 6, 6, 4), np.float32)
    padded[:, :, :5, :5] = x
    np.testing.assert_allclose(merge(Tensor(x)).asnumpy(), merge(Tensor(padded)).asnumpy(), atol=1e-6)
    assert merge.out_shape((2, 5, 5, 4)) == (2, 3, 3, 8)
    cfg = dict(load_config("tiny").model_kwargs("unet"), input_shape=[7, 15, 15, 4], target_shape=[6, 15, 15, 4])
    unet = models.build("unet", cfg)
    x = Tensor(np.zeros((1, 6, 15, 15, 4), np.float32))
    assert unet(x, Tensor(np.array([5], np.int32)), Tensor(np.zeros((1, 7, 15, 15, 4), np.float32))).shape == \
        (1, 6, 15, 15, 4)


@pytest.mark.parametrize("key, value", [("num_global_vectors", 2), ("downsample_type", "conv"),
                                        ("block_attn_patterns", ["video_swin", "axial"]), ("ffn_activation", "relu")])
def test_unsupported_options_are_named(key, value):
    cfg = dict(load_config("tiny").model_kwargs("unet"), **{key: value})
    with pytest.raises(ValueError, match="valid"):
        models.build("unet", cfg)
