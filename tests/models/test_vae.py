"""The VAE (models/vae): parity with the official PyTorch AutoencoderKL, parameter tree, posterior, discriminator."""
import json

import numpy as np
import pytest

import prediff_models as models
from prediff_models.vae import AutoencoderKL, NLayerDiscriminator, posterior
from prediff.config import load_config

import mindspore as ms  # noqa: E402  (after models: the environment is set before MindSpore loads)

TOL = 1e-4  # parity bar of tests/fixtures/official/README.md ("Judging parity")


# ---------------------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def fixture(official_dir):
    z = np.load(official_dir / "vae.npz", allow_pickle=False)
    return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def official_net(fixture):
    net = models.build("vae", json.loads(str(fixture["config_json"])))
    models.load_official_state_dict(net, _state(fixture))
    return net


def _state(fixture):
    return {k[len("param/"):]: v for k, v in fixture.items() if k.startswith("param/")}


def _max_diff(a, b):
    a = a.asnumpy() if isinstance(a, ms.Tensor) else a
    return float(np.abs(a - b).max())


def _expected_official_shapes(cfg):
    """Official state_dict key → shape, derived independently from the official block layout."""
    chans, lpb, lat = list(cfg["block_out_channels"]), cfg["layers_per_block"], cfg["latent_channels"]
    out = {}

    def conv(name, cin, cout, k):
        out[f"{name}.weight"], out[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    def norm(name, c):
        out[f"{name}.weight"], out[f"{name}.bias"] = (c,), (c,)

    def resnet(name, cin, cout):
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cin, cout, 3)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.conv_shortcut", cin, cout, 1)

    def mid(name, c):
        norm(f"{name}.attentions.0.group_norm", c)
        for lin in ("query", "key", "value", "proj_attn"):
            out[f"{name}.attentions.0.{lin}.weight"], out[f"{name}.attentions.0.{lin}.bias"] = (c, c), (c,)
        resnet(f"{name}.resnets.0", c, c)
        resnet(f"{name}.resnets.1", c, c)

    conv("encoder.conv_in", cfg["in_channels"], chans[0], 3)
    for i, c in enumerate(chans):
        cin = chans[max(i - 1, 0)]
        for j in range(lpb):
            resnet(f"encoder.down_blocks.{i}.resnets.{j}", cin if j == 0 else c, c)
        if i < len(chans) - 1:
            conv(f"encoder.down_blocks.{i}.downsamplers.0.conv", c, c, 3)
    mid("encoder.mid_block", chans[-1])
    norm("encoder.conv_norm_out", chans[-1])
    conv("encoder.conv_out", chans[-1], 2 * lat, 3)
    rev = chans[::-1]
    conv("decoder.conv_in", lat, rev[0], 3)
    for i, c in enumerate(rev):
        cin = rev[max(i - 1, 0)]
        for j in range(lpb + 1):
            resnet(f"decoder.up_blocks.{i}.resnets.{j}", cin if j == 0 else c, c)
        if i < len(rev) - 1:
            conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", c, c, 3)
    mid("decoder.mid_block", rev[0])
    norm("decoder.conv_norm_out", rev[-1])
    conv("decoder.conv_out", rev[-1], cfg["out_channels"], 3)
    conv("quant_conv", 2 * lat, 2 * lat, 1)
    conv("post_quant_conv", lat, lat, 1)
    return out


def _shapes(net):
    return {k: tuple(v.shape) for k, v in models.official_state_dict(net).items()}


# ---------------------------------------------------------------------------------------------------------------
# parity with the official code


def test_encode_matches_official(official_net, fixture):
    moments = official_net.encode(ms.Tensor(fixture["in/x"]))
    assert moments.shape == fixture["out/moments"].shape
    assert _max_diff(moments, fixture["out/moments"]) <= TOL  # measured 1.5e-6
    mean, logvar = posterior.split_moments(moments)
    assert _max_diff(mean, fixture["out/mean"]) <= TOL  # measured 1.1e-6
    assert _max_diff(logvar, fixture["out/logvar"]) <= TOL  # measured 1.5e-6


def test_decode_matches_official(official_net, fixture):
    decoded = official_net.decode(ms.Tensor(fixture["out/mean"]))
    assert decoded.shape == fixture["out/decoded_from_mean"].shape
    assert _max_diff(decoded, fixture["out/decoded_from_mean"]) <= TOL  # measured 6.3e-6


def test_construct_is_decode_of_mean_or_sample(official_net, fixture):
    x = ms.Tensor(fixture["in/x"])
    recon, moments = official_net(x)
    assert _max_diff(moments, fixture["out/moments"]) <= TOL
    assert _max_diff(recon, fixture["out/decoded_from_mean"]) <= TOL
    noise = np.random.default_rng(0).standard_normal(fixture["out/mean"].shape).astype(np.float32)
    recon_s, _ = official_net(x, ms.Tensor(noise))
    z = fixture["out/mean"] + np.exp(0.5 * fixture["out/logvar"]) * noise
    assert _max_diff(recon_s, official_net.decode(ms.Tensor(z)).asnumpy()) <= 1e-5
    assert _max_diff(recon_s, recon.asnumpy()) > 1e-3  # the noise really changed the latent


def test_jit_equals_pynative(official_net, fixture):
    x = ms.Tensor(fixture["in/x"])
    mean = ms.Tensor(fixture["out/mean"])
    noise = ms.Tensor(np.random.default_rng(1).standard_normal(fixture["out/mean"].shape).astype(np.float32))

    # `def` wrappers, as the callers (trainer, sampler) jit them; see the AutoencoderKL docstring.
    def encode(inputs):
        return official_net.encode(inputs)

    def decode(latent):
        return official_net.decode(latent)

    def round_trip(inputs, eps):
        return official_net(inputs, eps)

    assert _max_diff(ms.jit(encode)(x), official_net.encode(x).asnumpy()) <= 1e-6
    decoded = ms.jit(decode)(mean)
    assert _max_diff(decoded, fixture["out/decoded_from_mean"]) <= TOL
    assert _max_diff(decoded, official_net.decode(mean).asnumpy()) <= 1e-6
    recon_j, moments_j = ms.jit(round_trip)(x, noise)
    recon_p, moments_p = official_net(x, noise)
    assert _max_diff(recon_j, recon_p.asnumpy()) <= 1e-6
    assert _max_diff(moments_j, moments_p.asnumpy()) <= 1e-6


def test_jit_of_bound_methods(fixture):
    net = models.build("vae", json.loads(str(fixture["config_json"])))
    models.load_official_state_dict(net, _state(fixture))
    moments = ms.jit(net.encode)(ms.Tensor(fixture["in/x"]))
    assert _max_diff(moments, fixture["out/moments"]) <= TOL
    decoded = ms.jit(net.decode)(ms.Tensor(fixture["out/mean"]))
    assert _max_diff(decoded, fixture["out/decoded_from_mean"]) <= TOL


# ---------------------------------------------------------------------------------------------------------------
# parameter tree and official loading


def test_parameter_tree_is_the_official_one(fixture):
    cfg = json.loads(str(fixture["config_json"]))
    net = models.build("vae", cfg)
    expected = {k: tuple(v.shape) for k, v in _state(fixture).items()}
    assert _shapes(net) == expected
    assert _expected_official_shapes(cfg) == expected  # validates the derivation used for the paper config
    assert models.count_parameters(net) == 1027781


def test_paper_configuration_has_the_published_size():
    cfg = load_config("sevirlr").model_kwargs("vae")
    net = models.build("vae", cfg)
    assert models.count_parameters(net) == 84_499_393
    shapes = _shapes(net)
    assert len(shapes) == 248
    assert shapes == _expected_official_shapes(cfg)
    assert shapes["encoder.mid_block.attentions.0.query.weight"] == (512, 512)
    assert shapes["decoder.up_blocks.3.resnets.0.conv_shortcut.weight"] == (128, 256, 1, 1)


def test_loader_rejects_mismatched_state_dicts(fixture):
    net = models.build("vae", json.loads(str(fixture["config_json"])))
    state = _state(fixture)
    missing = dict(state)
    del missing["encoder.conv_in.bias"]
    with pytest.raises(models.StateDictMismatch, match=r"1 missing: encoder\.conv_in\.bias"):
        models.load_official_state_dict(net, missing)
    extra = dict(state, **{"encoder.extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(models.StateDictMismatch, match=r"1 unexpected: encoder\.extra\.weight"):
        models.load_official_state_dict(net, extra)
    wrong = dict(state, **{"quant_conv.weight": np.zeros((8, 4, 1, 1), np.float32)})
    with pytest.raises(models.StateDictMismatch, match=r"quant_conv\.weight \(file \[8, 4, 1, 1\] vs network \[8, 8, 1, 1\]\)"):
        models.load_official_state_dict(net, wrong)
    # nothing was copied by the failed loads: the weights are still the constructor's
    assert not np.array_equal(net.encoder.conv_in.bias.asnumpy(), state["encoder.conv_in.bias"])
    # and the round trip through official names is exact
    models.load_official_state_dict(net, state)
    back = models.official_state_dict(net)
    assert all(np.array_equal(back[k], v) for k, v in state.items())


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_presets_round_trip_frames(preset):
    cfg = load_config(preset).model_kwargs("vae")
    net = models.build("vae", cfg)
    x = ms.Tensor(np.random.default_rng(2).random((2, 1, 128, 128), dtype=np.float32))
    recon, moments = net(x)
    latent = cfg["latent_channels"]
    assert moments.shape == (2, 2 * latent, 16, 16)
    assert recon.shape == (2, 1, 128, 128)
    assert net.decode(posterior.mode(moments)).shape == (2, 1, 128, 128)
    assert np.isfinite(recon.asnumpy()).all()


def test_latent_grid_follows_the_number_of_blocks():
    net = AutoencoderKL(in_channels=2, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 3,
                        up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[8, 8, 16],
                        layers_per_block=1, latent_channels=3, norm_num_groups=4)
    recon, moments = net(ms.Tensor(np.zeros((1, 2, 24, 40), np.float32)))
    assert moments.shape == (1, 6, 6, 10) and recon.shape == (1, 3, 24, 40)


@pytest.mark.parametrize("change, message", [
    ({"act_fn": "relu"}, "valid: silu, swish"),
    ({"down_block_types": ["AttnDownEncoderBlock2D"] * 4}, "valid: DownEncoderBlock2D"),
    ({"up_block_types": ["UpBlock2D"] * 4}, "valid: UpDecoderBlock2D"),
    ({"block_out_channels": [8, 16, 16]}, "same non-zero length"),
    ({"norm_num_groups": 3}, "does not divide"),
])
def test_unsupported_arguments_are_rejected(change, message):
    cfg = dict(load_config("tiny").model_kwargs("vae"), **change)
    with pytest.raises(ValueError, match=message):
        AutoencoderKL(**cfg)


# ---------------------------------------------------------------------------------------------------------------
# posterior helpers


def test_posterior_known_answers():
    zeros = ms.Tensor(np.zeros((3, 8, 2, 2), np.float32))
    np.testing.assert_array_equal(posterior.kl(zeros).asnumpy(), np.zeros(3, np.float32))
    rng = np.random.default_rng(3)
    mean = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    logvar = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    moments = ms.Tensor(np.concatenate([mean, logvar], axis=1))
    np.testing.assert_array_equal(posterior.mode(moments).asnumpy(), mean)
    np.testing.assert_array_equal(posterior.sample(moments, ms.Tensor(np.zeros_like(mean))).asnumpy(), mean)
    noise = rng.standard_normal(mean.shape).astype(np.float32)
    np.testing.assert_allclose(posterior.sample(moments, ms.Tensor(noise)).asnumpy(),
                               mean + np.exp(0.5 * logvar) * noise, rtol=1e-5, atol=1e-5)
    expected_kl = 0.5 * (mean ** 2 + np.exp(logvar) - 1 - logvar).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(posterior.kl(moments).asnumpy(), expected_kl, rtol=1e-5)
    # unit mean, zero logvar: 0.5 per element
    ones = ms.Tensor(np.concatenate([np.ones((1, 2, 2, 2)), np.zeros((1, 2, 2, 2))], axis=1).astype(np.float32))
    np.testing.assert_allclose(posterior.kl(ones).asnumpy(), [4.0], rtol=1e-6)


def test_posterior_clamps_logvar_and_works_under_jit():
    moments = ms.Tensor(np.array([[[[0.5]], [[0.25]], [[-100.0]], [[100.0]]]], np.float32))  # (1, 4, 1, 1)
    mean, logvar = posterior.split_moments(moments)
    np.testing.assert_array_equal(mean.asnumpy().ravel(), [0.5, 0.25])
    np.testing.assert_array_equal(logvar.asnumpy().ravel(), [-30.0, 20.0])

    def stats(m, eps):
        return posterior.kl(m), posterior.sample(m, eps)

    eps = ms.Tensor(np.ones((1, 2, 1, 1), np.float32))
    kl_j, sample_j = ms.jit(stats)(moments, eps)
    np.testing.assert_allclose(kl_j.asnumpy(), posterior.kl(moments).asnumpy(), rtol=1e-6)
    np.testing.assert_allclose(sample_j.asnumpy().ravel(), [0.5 + np.exp(-15.0), 0.25 + np.exp(10.0)], rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# discriminator


def test_discriminator_shape_names_and_init():
    ms.set_seed(0)
    disc = NLayerDiscriminator(input_nc=1, ndf=64, n_layers=3)
    names = {p.name: tuple(p.shape) for p in disc.get_parameters()}
    assert names["main.0.weight"] == (64, 1, 4, 4) and names["main.0.bias"] == (64,)
    assert names["main.2.weight"] == (128, 64, 4, 4) and "main.2.bias" not in names
    assert names["main.3.gamma"] == (128,) and names["main.3.moving_mean"] == (128,)
    assert names["main.8.weight"] == (512, 256, 4, 4) and names["main.9.beta"] == (512,)
    assert names["main.11.weight"] == (1, 512, 4, 4) and names["main.11.bias"] == (1,)
    assert sum(p.size for p in disc.trainable_params()) == 2_763_585  # official PatchGAN, ndf 64, 1 channel (hand count)
    w = disc.main[8].weight.asnumpy()
    assert abs(w.mean()) < 1e-3 and abs(w.std() - 0.02) < 1e-3
    gamma = disc.main[9].gamma.asnumpy()
    assert abs(gamma.mean() - 1.0) < 5e-3 and 0.01 < gamma.std() < 0.03
    np.testing.assert_array_equal(disc.main[9].beta.asnumpy(), np.zeros(512, np.float32))
    disc.set_train(False)
    logits = disc(ms.Tensor(np.zeros((2, 1, 128, 128), np.float32)))
    assert logits.shape == (2, 1, 14, 14)
