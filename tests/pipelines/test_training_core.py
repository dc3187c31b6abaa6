"""Trainer building blocks: LR schedule, TrainStep (accumulation, clipping), EMA, checkpoint files."""

import numpy as np
import pytest

import prediff  # noqa: F401  (environment before MindSpore)
import mindspore as ms
from mindspore import Tensor, nn, ops

from prediff.errors import InputError
from prediff.io.checkpoint import Checkpoint, load_checkpoint, load_weights, net_weights, save_checkpoint
from prediff.pipelines.training.ema import EMA
from prediff.pipelines.training.lr_schedule import lr_at, lr_table
from prediff.pipelines.training.train_step import TrainStep


def test_lr_schedule_warmup_then_cosine():
    total, lr = 100, 1e-3
    assert lr_at(0, total, lr) == pytest.approx(1e-4)  # warm-up starts at 0.1·lr
    assert lr_at(5, total, lr) == pytest.approx(1e-4 + 0.9e-3 * 5 / 10)
    assert lr_at(10, total, lr) == pytest.approx(lr)  # end of the 10 % warm-up
    assert lr_at(55, total, lr) == pytest.approx(1e-6 + 0.5 * (lr - 1e-6))  # half way through the cosine
    assert lr_at(100, total, lr) == pytest.approx(1e-6)  # floor = 1e-3·lr
    table = lr_table(total, lr)
    assert table.dtype == np.float32 and len(table) == total
    assert np.all(np.diff(table[10:]) <= 0) and np.all(np.diff(table[:11]) > 0)


class _Quadratic(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x, y):
        d = self.net(x) - y
        return ops.mean(d * d), ops.mean(ops.abs(d))


def _run(accum, clip=1.0, steps=2):
    ms.set_seed(0)
    net = nn.Dense(4, 2)
    for _, p in net.parameters_and_names():
        p.set_data(Tensor(np.linspace(-0.5, 0.5, p.size, dtype=np.float32).reshape(p.shape)))
    ts = TrainStep(_Quadratic(net), net.trainable_params(), lr_schedule=lr_table(10, 0.05, warmup_ratio=0.0),
                   accum_steps=accum, weight_decay=0.01, grad_clip=clip)
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(2 * steps, 8, 4)).astype(np.float32), rng.normal(size=(2 * steps, 8, 2)).astype(np.float32)
    outs = []
    for s in range(steps):
        if accum == 1:
            mb = [(Tensor(np.concatenate(xs[2 * s:2 * s + 2])), Tensor(np.concatenate(ys[2 * s:2 * s + 2])))]
        else:
            mb = [(Tensor(xs[2 * s + i]), Tensor(ys[2 * s + i])) for i in range(2)]
        outs.append(ts(mb))
    return outs, net_weights(net), ts


def test_accumulation_equals_one_big_batch():
    fused, w1, ts1 = _run(1)
    accumulated, w2, ts2 = _run(2)
    for a, b in zip(fused, accumulated):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    for k in w1:
        np.testing.assert_allclose(w1[k], w2[k], atol=1e-6)
    assert ts1.step == ts2.step == 2


def test_training_lowers_the_loss_and_clipping_bounds_the_update():
    outs, _, _ = _run(1, clip=1.0, steps=6)
    assert outs[-1]["loss"] < outs[0]["loss"]
    # Adam is invariant to the gradient's scale, except through eps (1e-8): clipping the norm to 1e-10 makes
    # the update ~100x smaller, so the loss barely moves — proof that the clipped gradient reaches the optimizer.
    clipped, _, _ = _run(1, clip=1e-10, steps=6)
    assert outs[0]["loss"] - outs[-1]["loss"] > 20 * (clipped[0]["loss"] - clipped[-1]["loss"])
    # the reported norm is the pre-clipping one
    assert clipped[0]["grad_norm"] == pytest.approx(outs[0]["grad_norm"], rel=1e-6)


def test_optimizer_state_round_trip():
    _, _, ts = _run(2)
    state = ts.state()
    _, _, fresh = _run(2, steps=1)
    fresh.load_state(state)
    for k, v in fresh.state().items():
        np.testing.assert_array_equal(v, state[k])
    with pytest.raises(ValueError, match="does not match"):
        fresh.load_state({"global_step": state["global_step"]})


def test_ema_follows_official_warmup():
    net = nn.Dense(2, 1)
    for _, p in net.parameters_and_names():
        p.set_data(Tensor(np.zeros(p.shape, np.float32)))
    ema = EMA(net, decay=0.9999)
    for _, p in net.parameters_and_names():
        p.set_data(Tensor(np.ones(p.shape, np.float32)))
    ema.update()  # n = 0: decay = min(0.9999, 1/10) → shadow = 0.9·1
    first = ema.state()
    assert all(np.allclose(v, 0.9) for v in first.values())
    ema.update()  # n = 1: decay = 2/11 → shadow = 0.9 + (1 - 2/11)·0.1
    assert all(np.allclose(v, 0.9 + (9 / 11) * 0.1) for v in ema.state().values())


def test_checkpoint_round_trip_and_errors(tmp_path):
    net = nn.Dense(3, 2)
    ckpt = Checkpoint(component="align", model_kwargs={"a": [1, 2]}, model=net_weights(net), config={"seed": 3},
                      ema={k: v + 1 for k, v in net_weights(net).items()}, optim={"m.0": np.ones(3, np.float32)},
                      aux={"logvar": np.zeros(4, np.float32)}, meta={"step": 7})
    path = save_checkpoint(tmp_path / "x.ckpt", ckpt)
    assert [p.name for p in tmp_path.iterdir()] == ["x.ckpt"]  # no temporary file left
    again = load_checkpoint(path, component="align")
    assert again.model_kwargs == {"a": [1, 2]} and again.config == {"seed": 3} and again.meta["step"] == 7
    for k in ckpt.model:
        np.testing.assert_array_equal(again.model[k], ckpt.model[k])
        np.testing.assert_array_equal(again.ema[k], ckpt.ema[k])
    np.testing.assert_array_equal(again.aux["logvar"], np.zeros(4, np.float32))
    assert again.weights() is again.ema and again.weights(prefer_ema=False) is again.model
    other = nn.Dense(3, 2)
    load_weights(other, again.model)
    np.testing.assert_array_equal(net_weights(other)["weight"], ckpt.model["weight"])
    with pytest.raises(InputError, match="align checkpoint, but a vae checkpoint"):
        load_checkpoint(path, component="vae")
    with pytest.raises(InputError, match="does not fit"):
        load_weights(nn.Dense(3, 3), again.model)
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable MindSpore checkpoint"):
        load_checkpoint(bad)
    plain = tmp_path / "plain.ckpt"
    ms.save_checkpoint(net, str(plain))
    with pytest.raises(InputError, match="not a prediff one"):
        load_checkpoint(plain)


def test_vae_generator_loss_without_the_discriminator_is_the_same_loss_and_gradient():
    """Before disc_start the adversarial term is multiplied by 0: a run that never reaches disc_start leaves D out of
    the graph, and must train exactly as if it were there (same loss, same gradient), only faster."""
    import mindspore as ms
    from mindspore import Tensor

    import prediff_models as models
    from prediff.config import load_config
    from prediff.pipelines.training.vae_task import VAEGeneratorLoss
    from prediff_models.vae import NLayerDiscriminator

    cfg = load_config("tiny")
    vae = models.build("vae", cfg.model_kwargs("vae"))
    disc = NLayerDiscriminator(input_nc=1)
    rng = np.random.default_rng(3)
    x = Tensor(rng.random((2, 1, 32, 32), dtype=np.float32))
    down = 2 ** (len(cfg.vae.block_out_channels) - 1)
    noise = Tensor(rng.standard_normal((2, cfg.vae.latent_channels, 32 // down, 32 // down), dtype=np.float32))
    zero = Tensor(0.0, ms.float32)
    params = vae.trainable_params()
    results = []
    for with_disc in (True, False):
        loss = VAEGeneratorLoss(vae, disc, kl_weight=1e-6, with_disc=with_disc)
        fn = ms.value_and_grad(lambda *a: loss(*a)[0], None, params)
        value, grads = fn(x, noise, zero, zero)
        results.append((float(value.asnumpy()), [g.asnumpy() for g in grads], float(loss(x, noise, zero, zero)[3])))
    (v1, g1, adv1), (v2, g2, adv2) = results
    assert v1 == pytest.approx(v2, rel=1e-6) and adv2 == 0.0 and adv1 != 0.0
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("clip", [0.5, 1e6, 0.0], ids=["clipped", "below the limit", "off"])
def test_global_norm_and_clip_equals_mindspore_clipping(clip):
    """TrainStep's clipping (one norm pass, on the `SquareSum` kernel) against numpy's norm in float64 and MindSpore's
    `clip_by_global_norm`, on gradients of awkward sizes (not multiples of 16, one of 1 element)."""
    from prediff.pipelines.training.train_step import global_norm_and_clip
    from prediff_models.kernels import SquareSum

    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(shape).astype(np.float32) * 0.01 for shape in ((3, 5), (1,), (4099,), (2, 3, 7, 11))]
    grads = tuple(Tensor(a) for a in arrays)
    square_sum = SquareSum()

    def run(g):
        return global_norm_and_clip(g, clip, square_sum)

    norm, clipped = ms.jit(run)(grads)
    expected = float(np.sqrt(sum(np.sum(a.astype(np.float64) ** 2) for a in arrays)))
    assert float(norm.asnumpy()) == pytest.approx(expected, rel=1e-6)
    reference = ops.clip_by_global_norm(grads, clip) if clip > 0 else grads
    for ours, theirs in zip(clipped, reference):
        np.testing.assert_allclose(ours.asnumpy(), theirs.asnumpy(), rtol=1e-5, atol=1e-9)
    if clip == 0.5:
        assert np.sqrt(sum(np.sum(c.asnumpy().astype(np.float64) ** 2) for c in clipped)) == pytest.approx(0.5, rel=1e-5)
