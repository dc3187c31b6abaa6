"""Activation recomputation (`train_*.recompute`, the official `checkpoint_level`): which cells are marked, and that a
recomputed backward pass gives the same loss and gradients (dropout included) as the stored one."""
from __future__ import annotations

import numpy as np
import pytest


def _unet(cfg, level=0):
    import prediff_models as models

    return models.build("unet", {**cfg.model_kwargs("unet"), "checkpoint_level": level})


def test_levels_mark_attention_and_ffn_then_the_convolution_blocks():
    from mindspore import nn

    import prediff_models as models
    from prediff.config import load_config
    from prediff_models.earthformer.cuboid_attention import CuboidSelfAttentionLayer
    from prediff_models.earthformer.ffn import PositionwiseFFN
    from prediff_models.earthformer.time_embed_block import TimeEmbedResBlock
    from prediff_models.recompute import enable_recompute
    from prediff_models.vae import NLayerDiscriminator
    from prediff_models.vae.blocks import ResnetBlock2D

    cfg = load_config("tiny")

    def count(net, kind):
        return sum(isinstance(c, kind) for _, c in net.cells_and_names())

    unet = _unet(cfg)
    attn_ffn = count(unet, CuboidSelfAttentionLayer) + count(unet, PositionwiseFFN)
    assert attn_ffn > 0
    assert enable_recompute(_unet(cfg), 0) == 0
    assert enable_recompute(_unet(cfg), 1) == attn_ffn
    assert enable_recompute(_unet(cfg), 2) == attn_ffn + count(unet, TimeEmbedResBlock)

    vae = models.build("vae", cfg.model_kwargs("vae"))
    assert enable_recompute(vae, 1) == count(vae, ResnetBlock2D) + sum(
        type(c).__name__ == "AttentionBlock" for _, c in vae.cells_and_names())
    # level 2 marks whole stages: fewer, larger cells, none nested in another
    vae2 = models.build("vae", cfg.model_kwargs("vae"))
    n2 = enable_recompute(vae2, 2)
    assert 0 < n2 < count(vae2, ResnetBlock2D)
    # BatchNorm would count every batch twice: the discriminator is never marked
    assert enable_recompute(NLayerDiscriminator(input_nc=1), 2) == 0
    with pytest.raises(ValueError, match="valid: 0, 1, 2"):
        enable_recompute(nn.Dense(2, 2), 3)


@pytest.mark.compiled
@pytest.mark.parametrize("level", [1, 2])
def test_recomputed_backward_gives_the_same_loss_and_gradients_with_dropout_on(level):
    import mindspore as ms
    from mindspore import Tensor, ops

    from prediff.config import load_config
    from prediff.compile import compiled
    from prediff.pipelines.training.train_step import StepDropout

    cfg = load_config("tiny")
    rng = np.random.default_rng(0)
    t_in, t_out = cfg.unet.input_shape[0], cfg.unet.target_shape[0]
    h, w, c = cfg.unet.target_shape[1:]
    cond = Tensor(rng.standard_normal((2, t_in, h, w, c), dtype=np.float32))
    x = Tensor(rng.standard_normal((2, t_out, h, w, c), dtype=np.float32))
    t = Tensor(np.array([3, 700], np.int32))
    target = Tensor(rng.standard_normal((2, t_out, h, w, c), dtype=np.float32))
    results = []
    reference = None
    for lvl in (0, level):
        net = _unet(cfg, lvl)
        if reference is None:
            reference = [p.asnumpy() for p in net.trainable_params()]
        else:
            for p, v in zip(net.trainable_params(), reference):
                p.set_data(Tensor(v))
        net.set_train(True)
        dropout = StepDropout.install(net)
        assert dropout is not None, "the tiny UNet must have dropout for this test to check the recomputed masks"
        params = net.trainable_params()

        def loss(x_, t_, cond_, target_):
            return ops.mean(ops.square(net(x_, t_, cond_) - target_))

        grad_fn = ms.value_and_grad(dropout.keyed(loss), None, params)

        @compiled
        def step(key, x_, t_, cond_, target_):
            return grad_fn(key, x_, t_, cond_, target_)

        dropout.begin_step(seed=5, step=1)
        value, grads = step(dropout.key(0), x, t, cond, target)
        results.append((float(value.asnumpy()), [g.asnumpy() for g in grads]))
    (v0, g0), (v1, g1) = results
    assert v0 == pytest.approx(v1, rel=1e-6)
    assert any(np.abs(g).max() > 0 for g in g0)
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_recompute_is_a_training_setting_that_a_resumed_run_may_change():
    from prediff.config import load_config
    from prediff.errors import ConfigError

    assert load_config("tiny", values={"train_diffusion.recompute": 2}).train_diffusion.recompute == 2
    with pytest.raises(ConfigError, match="recompute"):
        load_config("tiny", values={"train_vae.recompute": 3})
    # keeping the linear layers' outputs is a choice of the block-by-block gradient only
    with pytest.raises(ConfigError, match="keep_linear_outputs.*needs recompute 3.*recompute here is 2"):
        load_config("tiny", values={"train_diffusion.recompute": 2, "train_diffusion.keep_linear_outputs": True})
    assert load_config("sevirlr").train_diffusion.keep_linear_outputs
    from prediff.pipelines.training import run

    assert "recompute" in run._RESUME_FREE_TRAIN and "keep_linear_outputs" in run._RESUME_FREE_TRAIN


# ---------------------------------------------------------------------------------------------------------------
# level 3: the UNet differentiated block by block (pipelines/training/blockwise.py)

def _tiny_inputs(cfg, batch, seed):
    from mindspore import Tensor

    rng = np.random.default_rng(seed)
    t_in, t_out = cfg.unet.input_shape[0], cfg.unet.target_shape[0]
    h, w, c = cfg.unet.target_shape[1:]
    return (Tensor(rng.standard_normal((batch, t_in, h, w, c), dtype=np.float32)),
            Tensor(rng.standard_normal((batch, t_out, h, w, c), dtype=np.float32)),
            Tensor(rng.integers(0, cfg.diffusion.timesteps, size=(batch,)).astype(np.int32)),
            Tensor(rng.standard_normal((batch, t_out, h, w, c), dtype=np.float32)))


def test_unet_plan_reproduces_its_forward():
    from prediff.config import load_config

    cfg = load_config("tiny")
    net = _unet(cfg)
    cond, x, t, _ = _tiny_inputs(cfg, 2, 1)
    h, _ = net.run_plan(*net.embed(x, t, cond))
    np.testing.assert_array_equal(net.head(h).asnumpy(), net(x, t, cond).asnumpy())
    kinds = [kind for kind, _, _ in net.plan()]
    n = len(cfg.unet.depth)
    assert kinds.count("block") == 2 * sum(cfg.unet.depth)
    assert kinds.count("down") == kinds.count("up") == kinds.count("save") == kinds.count("add") == n - 1


# eager, as most tests (three compiled trainings cost 2.5 minutes); the compiled block-by-block trainer is checked
# against a compiled single-graph run in tests/pipelines/test_training.py
def test_blockwise_train_step_equals_the_single_graph_step_with_dropout_and_accumulation():
    """Three identical UNets, one trained with the whole loss in one graph, one block by block (recompute 3), one
    block by block keeping the linear layers' and convolutions' outputs (`keep_linear_outputs`): after two optimizer
    steps of two micro-batches each (dropout on, learned log-variance) losses and weights agree."""
    from mindspore import Tensor

    from prediff.config import load_config
    from prediff.pipelines.training.diffusion_task import LatentDiffusionLoss
    from prediff.pipelines.training.train_step import StepDropout, TrainStep
    from prediff.pipelines.training.blockwise import BlockwiseGradient
    from prediff_models.diffusion import make_schedule

    cfg = load_config("tiny")
    d = cfg.diffusion
    schedule = make_schedule(d.timesteps, d.beta_schedule, d.linear_start, d.linear_end, d.cosine_s)
    runs = []
    reference = None
    for blockwise, keep in ((False, False), (True, False), (True, True)):
        net = _unet(cfg)
        if reference is None:
            reference = [p.asnumpy().copy() for p in net.trainable_params()]  # asnumpy shares memory
        else:
            for p, v in zip(net.trainable_params(), reference):
                p.set_data(Tensor(v))
        net.set_train(True)
        loss = LatentDiffusionLoss(net, schedule, learn_logvar=True, logvar_init=0.0)
        dropout = StepDropout.install(net)
        assert dropout is not None
        params = list(net.trainable_params()) + [loss.logvar]
        gradient = BlockwiseGradient(net, loss.stem, loss.head, params, keyed=dropout.keyed, has_key=True,
                                     head_params=[loss.logvar], keep_linear_outputs=keep) if blockwise else None
        if keep:  # every block's three attention layers' qkv and projection and FFN layers, at least
            assert all(len(stash) >= 3 * 4 for stash in gradient.stashes) and gradient.stashes
        step = TrainStep(loss, params, lr_schedule=np.full(4, 1e-3, np.float32), accum_steps=2, dropout=dropout,
                         gradient=gradient, weight_decay=0.01)
        outs = []
        for k in range(2):
            dropout.begin_step(seed=3, step=k)
            outs.append(step([_tiny_inputs(cfg, 2, 10 + 2 * k), _tiny_inputs(cfg, 2, 11 + 2 * k)]))
        runs.append((outs, [p.asnumpy().copy() for p in params]))
    (outs0, w0) = runs[0]
    moved = [np.abs(b - a).max() for a, b in zip(reference + [np.zeros(1)], w0)]
    assert max(moved) > 1e-4, "the weights must move for this comparison to mean something"
    for outs1, w1 in runs[1:]:
        for a, b in zip(outs0, outs1):
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
            assert b["aux"][0] == pytest.approx(a["aux"][0], rel=1e-5)
            assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        for a, b in zip(w0, w1):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
