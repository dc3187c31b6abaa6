"""Diffusion core: schedule and DDPM-step parity with the official code, guidance, DDIM, DPM-Solver++."""
import json

import numpy as np
import pytest

import prediff_models as models
import prediff_models.diffusion as D
from gaussian_eps import GaussianEps
import mindspore as ms
from mindspore import Tensor, nn, ops


def _net(name, z):
    net = models.build(name, json.loads(str(z["config_json"])))
    models.load_official_state_dict(net, {k[len("param/"):]: z[k] for k in z.files if k.startswith("param/")})
    return net


@pytest.fixture(scope="module")
def nets(official_dir):
    return (_net("unet", np.load(official_dir / "unet.npz")), _net("align", np.load(official_dir / "align.npz")))


def test_schedule_matches_official(official_dir):
    z = np.load(official_dir / "schedule.npz")
    cfg = json.loads(str(z["config_json"]))
    sched = D.make_schedule(cfg["timesteps"], cfg["beta_schedule"], cfg["linear_start"], cfg["linear_end"],
                            cfg["cosine_s"])
    for key in z.files:
        if not key.startswith("out/"):
            continue
        name = key[4:]
        ours, ref = sched.arrays[name], z[key]
        assert ours.dtype == ref.dtype, name
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=0, err_msg=name)
    assert D.betas.shape == (1000,) and float(D.posterior_log_variance_clipped[0]) == pytest.approx(np.log(1e-20))
    with pytest.raises(ValueError, match="valid: linear, sqrt_linear, cosine"):
        D.make_schedule(beta_schedule="quadratic")


def test_schedule_kinds():
    assert np.allclose(np.sqrt(D.make_betas(5, "linear", 1e-4, 4e-2)), np.linspace(1e-2, 2e-1, 5))
    assert np.allclose(D.make_betas(5, "sqrt_linear", 1e-4, 4e-2), np.linspace(1e-4, 4e-2, 5))
    cos = D.make_betas(1000, "cosine")
    assert np.all(cos > 0) and cos.max() <= 0.999 and np.all(np.diff(cos[:900]) > 0)


def test_ddpm_step_matches_official(official_dir, nets):
    unet, align = nets
    s = np.load(official_dir / "ddpm_step.npz")
    sched = D.default_schedule()
    z, cond, noise = Tensor(s["in/z"]), Tensor(s["in/cond"]), Tensor(s["in/noise"])
    for k, ts in enumerate(s["in/t"]):
        t = Tensor(ts.astype(np.int32))
        eps = unet(z, t, cond)
        x0 = D.predict_x0(z, t, eps, sched)
        mean = D.posterior_mean(x0, z, t, sched)
        np.testing.assert_allclose(eps.asnumpy(), s["out/eps"][k], atol=1e-4)
        scale = max(1.0, float(sched.arrays["sqrt_recipm1_alphas_cumprod"][ts].max()))
        assert np.abs(x0.asnumpy() - s["out/x0"][k]).max() <= 1e-4 * scale
        np.testing.assert_allclose(mean.asnumpy(), s["out/model_mean"][k], atol=1e-4)
        np.testing.assert_allclose(sched.arrays["posterior_log_variance_clipped"][ts], s["out/model_log_variance"][k])
        plain = D.ddpm_step(unet, z, t, cond, noise).asnumpy()
        aligned = D.ddpm_step(unet, z, t, cond, noise, align_net=align, y_hat=Tensor(s["in/y_hat"]),
                              guide_scale=float(s["in/guide_scale"])).asnumpy()
        np.testing.assert_allclose(plain, s["out/z_prev"][k], atol=1e-4)
        np.testing.assert_allclose(aligned, s["out/z_prev_aligned"][k], atol=1e-4)
    # the aligned step really moves the mean at t = 500 (the MindEarth port's cut gradient would not)
    assert np.abs(s["out/z_prev_aligned"][0] - s["out/z_prev"][0]).max() > 1e-2


def test_guidance_matches_official(official_dir, nets):
    _, align = nets
    a = np.load(official_dir / "align.npz")
    zt, t, y = Tensor(a["in/zt"]), Tensor(a["in/t"].astype(np.int32)), Tensor(a["in/y_hat"])
    value, grad = D.alignment_grad(align, zt, t, y)
    assert float(value.asnumpy()) == pytest.approx(float(a["out/F"]), abs=1e-5)
    ref = a["out/grad"]
    assert np.abs(grad.asnumpy() - ref).max() <= min(1e-4, 1e-3 * np.abs(ref).max())
    shift = D.guidance_shift(align, zt, t, y, float(a["in/guide_scale"]), D.default_schedule()).asnumpy()
    np.testing.assert_allclose(shift, a["out/mean_shift"], atol=1e-4)


def test_independent_members_get_their_own_gradient(official_dir, nets):
    _, align = nets
    a = np.load(official_dir / "align.npz")
    zt, t, y = a["in/zt"], a["in/t"].astype(np.int32), a["in/y_hat"]
    _, both = D.alignment_grad(align, Tensor(zt), Tensor(t), Tensor(y), couple_members=False)
    for b in range(2):
        _, alone = D.alignment_grad(align, Tensor(zt[b:b + 1]), Tensor(t[b:b + 1]), Tensor(y[b:b + 1]))
        np.testing.assert_allclose(both.asnumpy()[b:b + 1], alone.asnumpy(), atol=1e-6)


def test_guided_eps_reproduces_the_official_mean_shift(official_dir, nets):
    unet, align = nets
    s = np.load(official_dir / "ddpm_step.npz")
    sched = D.default_schedule()
    z, cond, y = Tensor(s["in/z"]), Tensor(s["in/cond"]), Tensor(s["in/y_hat"])
    t = Tensor(np.array([500, 500], np.int32))
    scale = float(s["in/guide_scale"])
    eps = D.corrected_eps(unet, z, t, cond, sched, align, y, scale)
    via_eps = D.posterior_mean(D.predict_x0(z, t, eps, sched), z, t, sched).asnumpy()
    np.testing.assert_allclose(via_eps, s["out/z_prev_aligned"][0] - (s["out/z_prev"][0] - s["out/model_mean"][0]),
                               atol=1e-4)


class FixedEps(nn.Cell):
    """A stand-in denoiser that returns a fixed ε whatever its input."""

    def __init__(self, eps):
        super().__init__()
        self.eps = Tensor(eps)

    def construct(self, z, t, cond):
        return ops.broadcast_to(self.eps, z.shape)


def test_ddim_step_closed_form():
    rng = np.random.default_rng(0)
    z, eps, noise = (rng.standard_normal((2, 3, 4, 4, 2)).astype(np.float32) for _ in range(3))
    sched = D.default_schedule()
    ac = sched.arrays["alphas_cumprod"].astype(np.float64)
    t, tp, eta = 700, 650, 0.3
    x0 = (z - np.sqrt(1 - ac[t]) * eps) / np.sqrt(ac[t])
    sigma = eta * np.sqrt((1 - ac[tp]) / (1 - ac[t])) * np.sqrt(1 - ac[t] / ac[tp])
    expected = np.sqrt(ac[tp]) * x0 + np.sqrt(1 - ac[tp] - sigma ** 2) * eps + sigma * noise
    got = D.ddim_step(FixedEps(eps), Tensor(z), t, tp, None, Tensor(noise), eta=eta).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # the last step (to ᾱ = 1) returns x̂0
    last = D.ddim_step(FixedEps(eps), Tensor(z), 49, -1, None, Tensor(noise)).asnumpy()
    np.testing.assert_allclose(last, (z - np.sqrt(1 - ac[49]) * eps) / np.sqrt(ac[49]), rtol=1e-4, atol=1e-5)


def test_ddim_eta_one_has_the_ddpm_variance():
    sched = D.default_schedule()
    pv = sched.arrays["posterior_variance"]
    zeros = np.zeros((1, 1, 1, 1, 1), np.float32)
    ones = np.ones_like(zeros)
    for t in (10, 500, 990):
        # with ε̂ = 0 and z = 0 the step returns σ·noise exactly
        sigma = float(D.ddim_step(FixedEps(zeros), Tensor(zeros), t, t - 1, None, Tensor(ones), eta=1.0).asnumpy().ravel()[0])
        assert sigma ** 2 == pytest.approx(float(pv[t]), rel=1e-4)
    assert D.ddim_timesteps(20)[0] == 999 and D.ddim_timesteps(20)[-1] == 49 and len(D.ddim_timesteps(20)) == 20
    with pytest.raises(ValueError):
        D.ddim_timesteps(0)


def test_q_sample_and_loss_known_answers():
    sched = D.default_schedule()
    z0 = np.full((2, 1, 1, 1, 1), 2.0, np.float32)
    noise = np.ones_like(z0)
    t = np.array([0, 999], np.int32)
    ac = sched.arrays["alphas_cumprod"]
    expected = np.sqrt(ac[t]) * 2.0 + np.sqrt(1 - ac[t])
    np.testing.assert_allclose(D.q_sample(Tensor(z0), Tensor(t), Tensor(noise), sched).asnumpy().ravel(), expected,
                               rtol=1e-6)
    pred, target = np.zeros((2, 3), np.float32), np.array([[1, 1, 1], [2, 2, 2]], np.float32)  # L_simple = 1, 4
    assert float(D.eps_loss(Tensor(pred), Tensor(target), Tensor(t)).asnumpy()) == pytest.approx(2.5)
    logvar = np.zeros(1000, np.float32)
    logvar[999] = np.log(2.0)  # sample 2: 4/2 + ln 2
    value = float(D.eps_loss(Tensor(pred), Tensor(target), Tensor(t), Tensor(logvar)).asnumpy())
    assert value == pytest.approx((1.0 + 2.0 + np.log(2.0)) / 2, rel=1e-6)


def _solve(kind, steps, z_t, model, eta=0.0, seed=0):
    sched = D.default_schedule()
    ts = D.ddim_timesteps(steps)
    z = Tensor(z_t)
    if kind == "ddim":
        for i, t in enumerate(ts):
            t_prev = int(ts[i + 1]) if i + 1 < len(ts) else -1
            z = D.ddim_step(model, z, int(t), t_prev, None, ops.zeros_like(z))
        return z.asnumpy()
    ratio, a, w_cur, w_prev, noise_scale = D.dpmpp_coefficients(sched, ts, eta)
    rng = np.random.default_rng(seed)
    prev = ops.zeros_like(z)
    for i, t in enumerate(ts):
        noise = Tensor(rng.standard_normal(z.shape).astype(np.float32)) if eta > 0 else None
        z, prev = D.dpmpp_2m_step(model, z, int(t), None, prev, float(ratio[i]), float(a[i]), float(w_cur[i]),
                                  float(w_prev[i]), sched, noise=noise, noise_scale=float(noise_scale[i]))
    return z.asnumpy()


def test_dpm_solver_converges_faster_than_ddim():
    m, s = 0.3, 0.5
    model = GaussianEps(m, s)
    z_t = np.random.default_rng(0).standard_normal((1, 2, 4, 4, 3)).astype(np.float32)
    a = float(D.default_schedule().arrays["alphas_cumprod"][999])
    exact = m + s * (z_t - np.sqrt(a) * m) / np.sqrt(a * s * s + 1 - a)  # the probability-flow ODE's endpoint
    err = {(k, n): np.abs(_solve(k, n, z_t, model) - exact).max() for k, n in (("ddim", 20), ("dpmpp", 20),
                                                                            ("ddim", 50))}
    assert err[("dpmpp", 20)] < err[("ddim", 20)] / 3
    assert err[("dpmpp", 20)] < 0.02 * s


class Pair(nn.Cell):
    """Holds both networks so their parameters get distinct names inside one graph (unet.*, align_net.*)."""

    def __init__(self, unet, align_net):
        super().__init__()
        self.unet, self.align_net = unet, align_net


def test_compiled_ddim_step_equals_eager(official_dir):
    pair = Pair(_net("unet", np.load(official_dir / "unet.npz")), _net("align", np.load(official_dir / "align.npz")))
    unet, align = pair.unet, pair.align_net
    s = np.load(official_dir / "ddpm_step.npz")
    args = (Tensor(s["in/z"]), Tensor(np.array([600, 600], np.int32)), Tensor(np.array([550, 550], np.int32)),
            Tensor(s["in/cond"]), Tensor(s["in/noise"]), Tensor(s["in/y_hat"]))

    def step(z, t, tp, cond, noise, y):
        return D.ddim_step(unet, z, t, tp, cond, noise, eta=0.5, align_net=align, y_hat=y, guide_scale=50.0)

    eager = step(*args).asnumpy()
    compiled = ms.jit(step)(*args).asnumpy()
    np.testing.assert_allclose(compiled, eager, atol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_dpmpp_coefficients_keep_the_marginals(eta):
    """For an exact x̂0 a step maps z_s ~ N(α_s x0, σ_s²) to N(α_t x0, σ_t²): a + ratio·α_s = α_t (first-order
    weights) and ratio²σ_s² + noise² = σ_t², for every η; η = 0 has no noise."""
    sched = D.default_schedule()
    ts = D.dpmpp_timesteps(20)
    ac = sched.arrays["alphas_cumprod"].astype(np.float64)
    ratio, a, w_cur, w_prev, noise = (c.astype(np.float64) for c in D.dpmpp_coefficients(sched, ts, eta))
    alpha, sigma = np.sqrt(ac[ts]), np.sqrt(1 - ac[ts])
    np.testing.assert_allclose(a[:-1] + ratio[:-1] * alpha[:-1], alpha[1:], rtol=1e-5)
    np.testing.assert_allclose(ratio[:-1] ** 2 * sigma[:-1] ** 2 + noise[:-1] ** 2, sigma[1:] ** 2, rtol=1e-4)
    np.testing.assert_allclose(w_cur + w_prev, 1.0, rtol=1e-6)
    assert (ratio[-1], a[-1], noise[-1]) == (0.0, 1.0, 0.0)
    assert (noise == 0).all() if eta == 0 else (noise[:-1] > 0).all()
    with pytest.raises(ValueError, match="outside"):
        D.dpmpp_coefficients(sched, ts, 1.5)


def test_stochastic_dpm_solver_samples_the_data_distribution():
    """SDE-DPM-Solver++(2M) with the exact ε-model of N(m, s²) data: 20 steps give samples with that mean and
    spread (a wrong noise scale would widen or shrink them), and they differ from the deterministic endpoint."""
    m, s = 0.3, 0.5
    model = GaussianEps(m, s)
    z_t = np.random.default_rng(1).standard_normal((8, 2, 16, 16, 4)).astype(np.float32)
    out = _solve("dpmpp", 20, z_t, model, eta=1.0)
    assert abs(out.mean() - m) < 0.02 and abs(out.std() / s - 1) < 0.03
    ode = _solve("dpmpp", 20, z_t, model)
    assert np.abs(out - ode).mean() > 0.1 * s
