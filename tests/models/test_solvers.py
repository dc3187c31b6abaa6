"""The higher-order solvers: DPM-Solver++(3M) and SA-Solver — their coefficients, their order of accuracy on
Gaussian data (where the exact x̂0 is analytic), their SDE forms' output distribution, and the ensemble sampler's
seed and member semantics and guidance with them."""
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

import prediff_models.diffusion as D
from gaussian_eps import GaussianEps
from prediff_models.diffusion import dpm_solver_3m as M3
from prediff_models.diffusion import sa_solver as SA

M, S = 0.3, 0.5  # the toy data: N(M, S²) per element


# ---------------------------------------------------------------------------------------------------------------
# the continuous problem: α(λ)² = sigmoid(2λ), data N(M, S²); along the probability-flow ODE
# z(λ) = α M + √(α² S² + σ²) ζ, and x̂0(z, λ) = M + S² α (z − α M)/(α² S² + σ²)


def _alpha_sigma(lam):
    a2 = 1.0 / (1.0 + np.exp(-2.0 * np.asarray(lam, np.float64)))
    return np.sqrt(a2), np.sqrt(1.0 - a2)


def _z_exact(zeta, lam):
    a, s = _alpha_sigma(lam)
    return a * M + np.sqrt(a * a * S * S + s * s) * zeta


def _x0(z, lam):
    a, s = _alpha_sigma(lam)
    return M + S * S * a * (z - a * M) / (a * a * S * S + s * s)


def _weight_integral(lam_s, lam_t, eta, f, n=200001):
    """α_t ∫_{λ_s}^{λ_t} (1+η) e^{−(1+η)(λ_t−λ)} f(λ) dλ by the trapezoid rule on a fine grid (independent of the
    solvers' closed forms and quadrature)."""
    lam = np.linspace(lam_s, lam_t, n)
    y = (1 + eta) * np.exp(-(1 + eta) * (lam_t - lam)) * f(lam)
    return _alpha_sigma(lam_t)[0] * np.sum((y[1:] + y[:-1]) / 2) * (lam[1] - lam[0])


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_3m_coefficients_keep_the_marginals(eta):
    """For an exact x̂0 (the same x0 at every step) a step maps z_s ~ N(α_s x0, σ_s²) to N(α_t x0, σ_t²): the x̂0
    weights sum to α_t − ratio·α_s and ratio²σ_s² + noise² = σ_t²; the first steps ramp the order up; the last
    step returns x̂0."""
    sched = D.default_schedule()
    ts = D.ddim_timesteps(15)
    ac = sched.arrays["alphas_cumprod"].astype(np.float64)
    ratio, c0, c1, c2, noise = (c.astype(np.float64) for c in D.dpmpp_3m_coefficients(sched, ts, eta))
    alpha, sigma = np.sqrt(ac[ts]), np.sqrt(1 - ac[ts])
    np.testing.assert_allclose((c0 + c1 + c2)[:-1] + ratio[:-1] * alpha[:-1], alpha[1:], rtol=1e-5)
    np.testing.assert_allclose(ratio[:-1] ** 2 * sigma[:-1] ** 2 + noise[:-1] ** 2, sigma[1:] ** 2, rtol=1e-4)
    assert c1[0] == c2[0] == c2[1] == 0 and c1[1] != 0 and c2[2] != 0
    assert (ratio[-1], c0[-1], c1[-1], c2[-1], noise[-1]) == (0.0, 1.0, 0.0, 0.0, 0.0)
    assert (noise == 0).all() if eta == 0 else (noise[:-1] > 0).all()
    with pytest.raises(ValueError, match="outside"):
        D.dpmpp_3m_coefficients(sched, ts, 1.5)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_sa_solver_coefficients_keep_the_marginals(eta):
    """The same identities for both SA-Solver stages; the first step has no corrector, the last returns D."""
    sched = D.default_schedule()
    ts = D.ddim_timesteps(12)
    ac = sched.arrays["alphas_cumprod"].astype(np.float64)
    c = {k: v.astype(np.float64) for k, v in D.sa_solver_coefficients(sched, ts, eta).items()}
    alpha, sigma = np.sqrt(ac[ts]), np.sqrt(1 - ac[ts])
    p_sum, c_sum = c["predictor"].sum(axis=1), c["corrector"].sum(axis=1)
    np.testing.assert_allclose(p_sum[:-1] + c["predictor_ratio"][:-1] * alpha[:-1], alpha[1:], rtol=1e-5)
    np.testing.assert_allclose(c["predictor_ratio"][:-1] ** 2 * sigma[:-1] ** 2 + c["predictor_noise"][:-1] ** 2,
                               sigma[1:] ** 2, rtol=1e-4)
    np.testing.assert_allclose(c_sum[1:] + c["corrector_ratio"][1:] * alpha[:-1], alpha[1:], rtol=1e-5)
    np.testing.assert_allclose(c["corrector_ratio"][1:] ** 2 * sigma[:-1] ** 2 + c["corrector_noise"][1:] ** 2,
                               sigma[1:] ** 2, rtol=1e-4)
    assert (c["corrector_ratio"][0], c_sum[0], c["corrector_noise"][0]) == (1.0, 0.0, 0.0)
    assert (c["predictor"][:3] != 0).sum(axis=1).tolist() == [1, 2, 3]  # the predictor's order ramps up to 3
    assert (c["corrector"][1:5] != 0).sum(axis=1).tolist() == [2, 3, 4, 4]  # the corrector's to 4
    assert c["predictor"][-1].tolist() == [1.0, 0.0, 0.0, 0.0] and c["predictor_ratio"][-1] == 0


def test_3m_weights_integrate_quadratics_exactly():
    """Step (3) of the 3M solver is the exact integral of the quadratic through the three predictions: for
    x̂0(λ) = 1 + 2λ − 3λ² the weighted sum equals the integral (to quadrature accuracy) at every η. This is what
    the factor 2 on the second difference buys: with φ_3 alone (as distributed elsewhere) it would be off."""
    lam = np.array([-0.4, -1.1, -1.5])  # λ_s, λ_r, λ_q (unevenly spaced)
    poly = lambda x: 1 + 2 * x - 3 * x * x  # noqa: E731
    for eta in (0.0, 0.5, 1.0):
        h = 0.6
        w = M3.multistep_weights(lam, _alpha_sigma(lam[0] + h)[0], h, eta, 3)
        exact = _weight_integral(lam[0], lam[0] + h, eta, poly)
        assert w @ poly(lam) == pytest.approx(exact, rel=1e-7)
        # the SA-Solver's 3-point predictor is the same polynomial integrated by quadrature
        sa = _alpha_sigma(lam[0] + h)[0] * SA.adams_weights(lam[0], lam[0] + h, lam, eta)
        np.testing.assert_allclose(sa, w, rtol=1e-10)
        # the same in Newton form, once with 2 φ_3 (ours) and once with φ_3 alone: only the former is exact
        phi1, phi2, phi3 = M3._phi((1 + eta) * h)
        d0, d1, d2 = poly(lam)
        h1, h2 = lam[0] - lam[1], lam[1] - lam[2]
        c = ((d0 - d1) / h1 - (d1 - d2) / h2) / (h1 + h2)
        d = (d0 - d1) / h1 + h1 * c
        alpha_t = _alpha_sigma(lam[0] + h)[0]
        assert alpha_t * (phi1 * d0 + h * phi2 * d - 2 * h * h * phi3 * c) == pytest.approx(exact, rel=1e-7)
        assert abs(alpha_t * (phi1 * d0 + h * phi2 * d - h * h * phi3 * c) - exact) > 1e-3


def _local_errors(scheme, hs, zeta=1.3, lam_s=-1.0):
    """One step of length h from the exact state at λ_s with exact predictions at λ_s − k h: |z_t − z(λ_t)|."""
    errors = []
    for h in hs:
        lam = lam_s + h * np.arange(-3, 2)  # four history points and the target
        alpha, sigma = _alpha_sigma(lam)
        hist = [_x0(_z_exact(zeta, l), l) for l in lam[3::-1]]  # newest first
        z_s = _z_exact(zeta, lam[3])
        if scheme == "3m":  # the coefficients' last row: the step from λ_s to λ_t, order 3
            ratio, c0, c1, c2, _ = (np.float64(v[-1]) for v in M3.step_coefficients(alpha, sigma, 0.0, to_data=False))
            z_t = ratio * z_s + c0 * hist[0] + c1 * hist[1] + c2 * hist[2]
        else:  # SA-Solver: predict with 3 points, evaluate x̂0 there, correct with 4 (the new one and 3 before)
            p = alpha[4] * SA.adams_weights(lam[3], lam[4], lam[3:0:-1], 0.0)
            z_pred = sigma[4] / sigma[3] * z_s + p @ hist[:3]
            c = alpha[4] * SA.adams_weights(lam[3], lam[4], lam[4:0:-1], 0.0)
            z_t = sigma[4] / sigma[3] * z_s + c @ np.array([_x0(z_pred, lam[4])] + hist[:3])
        errors.append(abs(z_t - _z_exact(zeta, lam[4])))
    return np.array(errors)


def test_local_error_orders():
    """On the probability-flow ODE of Gaussian data the one-step error of DPM-Solver++(3M) falls as h⁴ (a third-
    order solver) and that of the SA-Solver predictor-corrector (3 + 4 points) as h⁵ (fourth order)."""
    hs = np.array([0.4, 0.2, 0.1])  # (the 3M coefficients are float32: smaller steps would measure rounding)
    for scheme, order in (("3m", 4), ("sa", 5)):
        err = _local_errors(scheme, hs)
        observed = np.log2(err[:-1] / err[1:])
        assert (np.abs(observed - order) < 0.35).all(), (scheme, observed)


def _grid(n, t0=999, t1=199):
    return np.round(np.linspace(t0, t1, n + 1)).astype(np.int64)


def _solve(kind, ts, z_t, eta=0.0, seed=0, to_data=False):
    """Run the solver's MindSpore step over the timesteps ts, ending at ts[-1] (SA-Solver: with the corrector's
    last correction) or, with `to_data`, at ᾱ = 1."""
    sched, model = D.default_schedule(), GaussianEps(M, S)
    ac = sched.arrays["alphas_cumprod"].astype(np.float64)
    alpha, sigma = np.sqrt(ac[ts]), np.sqrt(1 - ac[ts])
    rng = np.random.default_rng(seed)
    z = Tensor(z_t)
    zeros = ops.zeros_like(z)
    if kind == "3m":
        ratio, c0, c1, c2, scale = M3.step_coefficients(alpha, sigma, eta, to_data=to_data)
        prev1 = prev2 = zeros
        for i in range(len(ratio)):
            noise = Tensor(rng.standard_normal(z.shape).astype(np.float32))
            z, x0 = D.dpmpp_3m_step(model, z, int(ts[i]), None, prev1, prev2, float(ratio[i]), float(c0[i]),
                                    float(c1[i]), float(c2[i]), sched, noise=noise, noise_scale=float(scale[i]))
            prev1, prev2 = x0, prev1
        return z.asnumpy()
    c = {k: v.astype(np.float64) for k, v in SA.step_coefficients(alpha, sigma, eta).items()}
    if not to_data:  # the last row only corrects into ts[-1]: its predictor is the identity
        c["predictor_ratio"][-1], c["predictor"][-1], c["predictor_noise"][-1] = 1.0, 0.0, 0.0
    z_corr, history, noise_prev = z, (zeros, zeros, zeros), zeros
    for i in range(len(ts)):
        noise = Tensor(rng.standard_normal(z.shape).astype(np.float32))
        z, z_corr, x0 = D.sa_solver_step(
            model, z, z_corr, int(ts[i]), None, history, float(c["corrector_ratio"][i]),
            [float(v) for v in c["corrector"][i]], float(c["corrector_noise"][i]), noise_prev,
            float(c["predictor_ratio"][i]), [float(v) for v in c["predictor"][i]], float(c["predictor_noise"][i]),
            noise, sched)
        history, noise_prev = (x0,) + history[:2], noise
    return z.asnumpy()


def test_compiled_solvers_converge_at_their_order():
    """The MindSpore steps, run over 999 → 199 in 10 and 20 steps on the Gaussian ε-model, land on the exact ODE
    solution with errors that shrink about as fast as their order says (measured 2.6 for 3M and 3.1 for SA-Solver
    from 10 to 20 steps: the first steps' lower orders weigh in); SA-Solver at 10 steps beats 3M at 10 several
    times over, and both at 20 steps are far below the first-order DDIM's error."""
    z_t = np.random.default_rng(0).standard_normal((1, 2, 8, 8, 3)).astype(np.float32)
    ac = D.default_schedule().arrays["alphas_cumprod"].astype(np.float64)
    zeta = (z_t - np.sqrt(ac[999]) * M) / np.sqrt(ac[999] * S * S + 1 - ac[999])
    exact = np.sqrt(ac[199]) * M + np.sqrt(ac[199] * S * S + 1 - ac[199]) * zeta
    errors = {(k, n): np.abs(_solve(k, _grid(n), z_t) - exact).max() for k in ("3m", "sa") for n in (10, 20)}
    assert np.log2(errors[("3m", 10)] / errors[("3m", 20)]) > 2.5, errors
    assert np.log2(errors[("sa", 10)] / errors[("sa", 20)]) > 2.8, errors
    assert errors[("sa", 10)] < errors[("3m", 10)] / 3, errors
    z = Tensor(z_t)
    ts = _grid(20)
    for i in range(20):
        z = D.ddim_step(GaussianEps(M, S), z, int(ts[i]), int(ts[i + 1]), None, ops.zeros_like(z))
    ddim = np.abs(z.asnumpy() - exact).max()
    assert errors[("3m", 20)] < ddim / 20 and errors[("sa", 20)] < ddim / 20, (errors, ddim)


@pytest.mark.parametrize("kind", ["3m", "sa"])
def test_sde_forms_sample_the_data_distribution(kind):
    """With η = 1 and the exact ε-model of N(m, s²) data, 30 steps to ᾱ = 1 give samples with that mean and spread
    within 3 %, unlike the deterministic endpoint. A wrong noise scale would miss: an SA corrector that drew fresh
    noise instead of reusing the prediction's gives 0.91 s, one without noise 0.41 s (NumPy, same problem). (At
    few steps the SDE forms of both widen the spread: +9 % at 15 steps, +13–15 % at 10 — docs/performance.md.)"""
    z_t = np.random.default_rng(1).standard_normal((8, 2, 16, 16, 4)).astype(np.float32)
    ts = D.ddim_timesteps(30)
    out = _solve(kind, ts, z_t, eta=1.0, to_data=True)
    assert abs(out.mean() - M) < 0.02 and abs(out.std() / S - 1) < 0.03, (out.mean(), out.std())
    ode = _solve(kind, ts, z_t, eta=0.0, to_data=True)
    assert np.abs(out - ode).mean() > 0.1 * S


# ---------------------------------------------------------------------------------------------------------------
# the ensemble sampler


class MeanAlign(nn.Cell):
    """A stand-in alignment network: each frame's mean latent, (B, T, 1)."""

    def construct(self, z, t):
        return z.mean(axis=(2, 3, 4)).reshape(z.shape[0], z.shape[1], 1)


class ToyUNet(nn.Cell):
    def __init__(self):
        super().__init__()
        self.eps = GaussianEps(M, S)

    def construct(self, z, t, cond):
        return self.eps(z, t, cond) + 0.0 * cond.mean()


SHAPE = (2, 4, 4, 3)


@pytest.mark.parametrize("sampler", ["dpmpp3m", "sasolver"])
def test_sampler_seed_and_member_semantics(sampler):
    """Through `EnsembleSampler`: the same seed gives the same members, another seed others; rows drawn from two
    sequences' generators in one call equal each sequence sampled alone (a sequence's members do not depend on
    its neighbours in the call)."""
    from prediff.pipelines.sampler import EnsembleSampler, MemberNoise

    sampler_ = EnsembleSampler(ToyUNet(), D.default_schedule(), sampler=sampler, steps=6, eta=1.0)
    assert sampler_.network_evaluations == 6
    cond = np.zeros((3, 1, 4, 4, 3), np.float32)

    def run(parts):
        return sampler_.sample(cond[:sum(n for _, n in parts)], MemberNoise(parts), target_shape=SHAPE)

    a = run([(np.random.default_rng(5), 2)])
    np.testing.assert_array_equal(a, run([(np.random.default_rng(5), 2)]))
    assert np.abs(a - run([(np.random.default_rng(6), 2)])).max() > 0.1
    both = run([(np.random.default_rng(5), 2), (np.random.default_rng(9), 1)])
    np.testing.assert_allclose(both[:2], a, atol=1e-6)
    np.testing.assert_allclose(both[2:], run([(np.random.default_rng(9), 1)]), atol=1e-6)


@pytest.mark.parametrize("sampler", ["dpmpp3m", "sasolver"])
def test_sampler_guidance_moves_the_members(sampler):
    """Alignment guidance enters the new solvers as it does dpmpp (a corrected ε̂): a high anticipated mean raises
    the members' mean over unguided sampling, a low one lowers it, with the same noise."""
    from prediff.pipelines.sampler import EnsembleSampler

    cond = np.zeros((2, 1, 4, 4, 3), np.float32)
    plain = EnsembleSampler(ToyUNet(), D.default_schedule(), sampler=sampler, steps=8, eta=1.0)
    guided = EnsembleSampler(ToyUNet(), D.default_schedule(), sampler=sampler, steps=8, eta=1.0,
                             align_net=MeanAlign(), guide_scale=2.0)
    base = plain.sample(cond, np.random.default_rng(3), target_shape=SHAPE).mean()
    high = guided.sample(cond, np.random.default_rng(3), np.full((2, 1), 2.0, np.float32), SHAPE).mean()
    low = guided.sample(cond, np.random.default_rng(3), np.full((2, 1), -2.0, np.float32), SHAPE).mean()
    assert low < base - 0.05 and high > base + 0.05, (low, base, high)
