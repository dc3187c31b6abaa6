"""Verification scores: official parity, hand-computed values, perfect forecasts, streaming and state round trips."""
import json
import math

import numpy as np
import pytest
from scipy import ndimage, signal

from prediff.errors import ConfigError, InputError
from prediff.verification import (CRPS, FSS, Contingency, RankHistogram, Scorer, SpreadSkill,
                                      contingency_counts, crps_ensemble, fss_sums, get_metric, max_pool,
                                      observation_ranks, ssim_frames)
from prediff.verification.ssim import gaussian_window

THRESHOLDS = ("16", "74", "133", "160", "181", "219")


def _storms(rng, shape, sigma=3.0):
    """Smooth fields on 0–1 with values above every threshold: (..., H, W)."""
    field = ndimage.gaussian_filter(rng.random(shape), sigma=(0,) * (len(shape) - 2) + (sigma, sigma))
    lo = field.min(axis=(-2, -1), keepdims=True)
    hi = field.max(axis=(-2, -1), keepdims=True)
    return ((field - lo) / (hi - lo)).astype(np.float32) ** 2


def _ensemble(rng, b=2, m=3, t=4, h=32, w=32):
    truth = _storms(rng, (b, t, h, w))
    noise = rng.normal(scale=0.08, size=(b, m, t, h, w)).astype(np.float32)
    forecast = np.clip(np.roll(truth, 2, axis=-1)[:, None] + noise, 0, 1).astype(np.float32)
    return forecast, truth


# --------------------------------------------------------------------------------------------- official parity

@pytest.fixture(scope="module")
def official_metrics(official_dir):
    z = np.load(official_dir / "metrics.npz", allow_pickle=False)
    config = json.loads(str(z["config_json"]))
    assert config["layout"] == "NTHWC" and config["eps"] == 1e-4
    return z, config


def _check_against_official(z, pool, scores, counts):
    for name in ("hits", "misses", "fas"):
        expected = z[f"out/pool{pool}/{name}"]
        assert np.array_equal(np.asarray(counts[name], np.float64), expected.astype(np.float64)), (pool, name)
    for official, ours in (("csi", "csi"), ("pod", "pod"), ("sucr", "sucr"), ("bias", "bias_official")):
        for key in THRESHOLDS + ("avg",):
            expected = float(z[f"out/pool{pool}/{official}/{key}"])
            assert abs(scores[ours][key] - expected) <= 1e-6 * max(1.0, abs(expected)), (pool, official, key)


def test_contingency_matches_official_sevir_skill_score(official_metrics):
    z, config = official_metrics
    pred, target = z["in/pred"][..., 0], z["in/target"][..., 0]  # NTHWC with C = 1 → (B, T, H, W)
    for pool in (1, 4, 16):
        score = Contingency(config["threshold_list"], pool=pool, eps=config["eps"])
        for a, b in config["update_batches"]:
            score.accumulate(pred[a:b], target[a:b])
        result = score.compute()
        _check_against_official(z, pool, result, result["counts"])
        # the standard frequency bias is the official quantity undone: sqrt(bias_official) · ln 2
        for key in THRESHOLDS:
            assert result["bias"][key] == pytest.approx(math.sqrt(result["bias_official"][key]) * math.log(2))


def test_scorer_matches_official_for_pooled_and_unpooled(official_metrics):
    z, config = official_metrics
    pred, target = z["in/pred"][..., 0], z["in/target"][..., 0]
    scorer = Scorer(config["threshold_list"], pools=(4, 16), eps=config["eps"], fss_scales=(1, 3))
    for a, b in config["update_batches"]:
        scorer.accumulate(pred[a:b], target[a:b])
    out = scorer.compute()
    assert out["n_cases"] == 3 and out["n_members"] == 1 and out["n_leads"] == 6
    _check_against_official(z, 1, out, out["counts"]["pool1"])
    for pool in (4, 16):
        for key in THRESHOLDS + ("avg",):
            assert abs(out[f"csi_pool{pool}"][key] - float(z[f"out/pool{pool}/csi/{key}"])) <= 1e-6
        assert out["counts"][f"pool{pool}"]["hits"] == z[f"out/pool{pool}/hits"].astype(int).tolist()


# --------------------------------------------------------------------------------------------- contingency

def test_contingency_counts_equal_a_direct_count_with_nan_rules():
    rng = np.random.default_rng(3)
    forecast = rng.random((2, 3, 4, 9, 7)).astype(np.float32) * 255
    truth = rng.random((2, 4, 9, 7)).astype(np.float32) * 255
    forecast[rng.random(forecast.shape) < 0.1] = np.nan
    truth[rng.random(truth.shape) < 0.1] = np.nan
    truth[0, 0, 0, :3] = 74.0  # exactly on a threshold: `>=` counts it
    thresholds = (16, 74, 133, 219)
    hits, misses, fas = contingency_counts(forecast, truth, thresholds)
    assert hits.shape == (4, 4)
    full_truth = np.broadcast_to(truth[:, None], forecast.shape)
    valid = ~(np.isnan(forecast) | np.isnan(full_truth))
    for i, tau in enumerate(thresholds):
        p = (forecast >= tau) & valid
        o = (full_truth >= tau) & valid
        assert np.array_equal(hits[i], (p & o).sum(axis=(0, 1, 3, 4)))
        assert np.array_equal(misses[i], (~p & o).sum(axis=(0, 1, 3, 4)))
        assert np.array_equal(fas[i], (p & ~o).sum(axis=(0, 1, 3, 4)))


def test_ensemble_counts_are_the_sum_of_member_counts():
    forecast, truth = _ensemble(np.random.default_rng(4))
    together = Contingency()
    together.accumulate(forecast, truth)
    summed = [np.zeros_like(c) for c in together.counts(per_lead=True)]
    for m in range(forecast.shape[1]):
        alone = Contingency()
        alone.accumulate(forecast[:, m], truth)
        for total, part in zip(summed, alone.counts(per_lead=True)):
            total += part
    for total, joint in zip(summed, together.counts(per_lead=True)):
        assert np.array_equal(total, joint)
    assert summed[0].sum() > 0


def test_scores_from_counts_by_hand():
    score = Contingency(thresholds=(0.5 * 255,), eps=0.0)
    # truth events at 3 pixels, forecast events at 4 pixels, 2 of them shared: h = 2, m = 1, f = 2
    truth = np.zeros((1, 1, 2, 4), np.float32)
    forecast = np.zeros((1, 1, 2, 4), np.float32)
    truth[0, 0, 0, :3] = 1.0
    forecast[0, 0, 0, 1:3] = 1.0
    forecast[0, 0, 1, :2] = 1.0
    score.accumulate(forecast, truth)
    out = score.compute()
    assert out["counts"] == {"hits": [2], "misses": [1], "fas": [2]}
    key = "127.5"
    assert out["csi"][key] == pytest.approx(2 / 5)
    assert out["pod"][key] == pytest.approx(2 / 3)
    assert out["sucr"][key] == pytest.approx(2 / 4)
    assert out["bias"][key] == pytest.approx(4 / 3)
    assert out["bias_official"][key] == pytest.approx((4 / 3 / math.log(2)) ** 2)
    assert out["csi"]["avg"] == out["csi"][key]


def test_max_pool_blocks_and_cropping():
    x = np.arange(2 * 6 * 9, dtype=np.float32).reshape(2, 6, 9)
    pooled = max_pool(x, 3)
    assert pooled.shape == (2, 2, 3)
    assert pooled[0, 0, 0] == x[0, :3, :3].max() and pooled[1, 1, 2] == x[1, 3:6, 6:9].max()
    assert max_pool(x, 4).shape == (2, 1, 2)  # partial blocks dropped, as torch max_pool2d
    assert max_pool(x, 1) is x


# --------------------------------------------------------------------------------------------- CRPS

def test_crps_of_a_single_member_is_its_mae():
    forecast, truth = _ensemble(np.random.default_rng(5), m=1)
    mae = np.abs(forecast[:, 0] - truth).mean()
    assert crps_ensemble(forecast, truth).mean() == pytest.approx(mae, rel=1e-6)
    assert crps_ensemble(forecast, truth, fair=False).mean() == pytest.approx(mae, rel=1e-6)
    scorer = Scorer(fss_scales=(1,))
    scorer.accumulate(forecast, truth)
    out = scorer.compute()
    assert out["crps"]["pool1"] == pytest.approx(out["mae"], rel=1e-9)
    assert out["spread_skill"]["ratio"] is None and out["spread_skill"]["spread"] is None


def test_crps_hand_computed_values():
    # members {0, 1}, truth 0: E|X − y| = (0 + 1)/2 = 0.5; Σ_{m<m'}|x_m − x_m'| = 1.
    #   fair:     0.5 − ½ · (2 · 1)/(M(M−1) = 2) = 0.5 − 0.5  = 0
    #   standard: 0.5 − ½ · (2 · 1)/(M² = 4)     = 0.5 − 0.25 = 0.25
    members = np.array([0.0, 1.0], np.float32).reshape(1, 2, 1, 1, 1)
    truth = np.zeros((1, 1, 1, 1), np.float32)
    assert crps_ensemble(members, truth).item() == pytest.approx(0.0, abs=1e-7)
    assert crps_ensemble(members, truth, fair=False).item() == pytest.approx(0.25)
    # members {0, 0.2, 0.6}, truth 0.3: E|X − y| = (0.3 + 0.1 + 0.3)/3 = 0.7/3; pair sum 0.2 + 0.6 + 0.4 = 1.2
    #   fair: 0.7/3 − 1.2/6 = 0.0333…;  standard: 0.7/3 − 1.2/9 = 0.1
    members = np.array([0.0, 0.2, 0.6], np.float32).reshape(1, 3, 1, 1, 1)
    truth = np.full((1, 1, 1, 1), 0.3, np.float32)
    assert crps_ensemble(members, truth).item() == pytest.approx(0.7 / 3 - 0.2, abs=1e-6)
    assert crps_ensemble(members, truth, fair=False).item() == pytest.approx(0.1, abs=1e-6)
    score = CRPS()
    score.accumulate(members, truth)
    assert score.compute()["crps"] == pytest.approx(0.7 / 3 - 0.2, abs=1e-6)


def test_crps_large_ensemble_path_and_pooling_agree_with_brute_force():
    rng = np.random.default_rng(6)
    members = rng.random((2, 20, 2, 8, 8)).astype(np.float32)  # M > 16 uses the sorted formula
    truth = rng.random((2, 2, 8, 8)).astype(np.float32)
    pairs = np.abs(members[:, :, None] - members[:, None, :]).sum(axis=(1, 2)) / 2
    brute = np.abs(members - truth[:, None]).mean(axis=1) - pairs / (20 * 19)
    assert np.allclose(crps_ensemble(members, truth), brute, atol=1e-5)
    score = CRPS(pool=4)
    score.accumulate(members, truth)
    expected = crps_ensemble(max_pool(members, 4), max_pool(truth, 4)).mean()
    assert score.compute()["crps"] == pytest.approx(expected, rel=1e-5)


def test_crps_of_uniform_members_matches_its_closed_form():
    # X, X', y i.i.d. U(0, 1): E|X − y| = 1/3, E|X − X'| = 1/3 → CRPS = 1/3 − 1/6 = 1/6
    # (the fair estimator is unbiased for any M)
    rng = np.random.default_rng(7)
    members = rng.random((4, 4, 1, 64, 64)).astype(np.float32)
    truth = rng.random((4, 1, 64, 64)).astype(np.float32)
    score = CRPS()
    score.accumulate(members, truth)
    out = score.compute()
    assert out["crps"] == pytest.approx(1 / 6, abs=3e-3)
    # the M²-normalised estimator is biased upwards by E|X − X'|/(2M) = 1/24 for M = 4
    assert out["crps_standard"] == pytest.approx(1 / 6 + 1 / 24, abs=3e-3)


# --------------------------------------------------------------------------------------------- SSIM, FSS

def test_ssim_matches_a_direct_2d_computation():
    rng = np.random.default_rng(8)
    x = _storms(rng, (1, 1, 1, 24, 30))
    y = _storms(rng, (1, 1, 24, 30))
    window = np.outer(gaussian_window(), gaussian_window())

    def filt(a):
        return signal.correlate2d(a.astype(np.float64), window, mode="valid")

    a, b = x[0, 0, 0], y[0, 0]
    mu_a, mu_b = filt(a), filt(b)
    var_a, var_b, cov = filt(a * a) - mu_a ** 2, filt(b * b) - mu_b ** 2, filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    expected = (((2 * mu_a * mu_b + c1) * (2 * cov + c2))
                / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))).mean()
    assert ssim_frames(x, y)[0, 0, 0] == pytest.approx(expected, abs=1e-5)
    assert ssim_frames(y[:, None], y)[0, 0, 0] == pytest.approx(1.0, abs=1e-6)
    assert ssim_frames(x, y).item() == pytest.approx(ssim_frames(y[:, None], x[:, 0]).item(), abs=1e-6)


@pytest.mark.parametrize("scale", [1, 4, 5, 9, 41])
def test_fss_matches_uniform_filter_fractions(scale):
    rng = np.random.default_rng(9)
    forecast, truth = _ensemble(rng, b=2, m=2, t=2, h=20, w=26)
    f255, t255 = forecast * np.float32(255), truth * np.float32(255)
    for tau in (16.0, 133.0):
        num, den = fss_sums(f255, t255, tau, (scale,))
        pf = ndimage.uniform_filter((f255 >= tau).astype(np.float64), size=(1, 1, 1, scale, scale), mode="constant")
        po = ndimage.uniform_filter((t255 >= tau).astype(np.float64), size=(1, 1, scale, scale), mode="constant")
        po = np.broadcast_to(po[:, None], pf.shape)
        expected = 1 - ((pf - po) ** 2).sum() / ((pf ** 2).sum() + (po ** 2).sum())
        assert 1 - num.sum() / den.sum() == pytest.approx(expected, abs=1e-12)


def test_fss_grows_with_scale_for_a_displaced_forecast():
    truth = _storms(np.random.default_rng(10), (2, 3, 48, 48))
    shifted = np.roll(truth, 6, axis=-1)
    score = FSS(thresholds=(74,), scales=(1, 5, 13, 25))
    score.accumulate(shifted, truth)
    values = list(score.compute()["fss"]["74"].values())
    assert all(a < b for a, b in zip(values, values[1:]))
    assert values[0] < 0.9


# --------------------------------------------------------------------------------------------- perfect forecast

def test_perfect_forecast_scores_perfectly():
    truth = _storms(np.random.default_rng(11), (2, 3, 32, 32))
    assert all((truth * 255 >= tau).any() for tau in (16, 74, 133, 160, 181, 219))
    forecast = np.repeat(truth[:, None], 3, axis=1)  # 3 identical members
    scorer = Scorer(fss_scales=(1, 5))
    scorer.accumulate(forecast, truth)
    out = scorer.compute()
    for block in (out, out["ensemble_mean"]):
        for key in THRESHOLDS:  # h / (h + eps) with at least one hit: within eps = 1e-4 of 1
            assert block["csi"][key] == pytest.approx(1.0, abs=1e-4)
            assert block["pod"][key] == pytest.approx(1.0, abs=1e-4)
            assert block["bias"][key] == pytest.approx(1.0, abs=1e-4)
            assert block["csi_pool16"][key] == pytest.approx(1.0, abs=1e-4)
            assert all(v == 1.0 for v in block["fss"][key].values())
        assert block["mse"] == 0.0 and block["mae"] == 0.0
        assert block["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert out["counts"]["pool1"]["misses"] == [0] * 6 and out["counts"]["pool1"]["fas"] == [0] * 6
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in out["crps"].values())
    assert out["spread_skill"]["spread"] == 0.0 and out["spread_skill"]["rmse"] == 0.0
    assert out["spread_skill"]["ratio"] is None  # 0/0
    json.dumps(out, allow_nan=False)


# --------------------------------------------------------------------------------------------- ensemble calibration

def test_rank_histogram_counts_every_pixel_and_breaks_ties_uniformly():
    rng = np.random.default_rng(12)
    forecast, truth = _ensemble(rng, b=3, m=4, t=2, h=16, w=16)
    hist = RankHistogram(seed=1)
    hist.accumulate(forecast, truth)
    out = hist.compute()
    assert len(out["rank_histogram"]) == 5 and sum(out["rank_histogram"]) == 3 * 2 * 16 * 16
    assert np.array_equal(np.sum(out["per_lead_time"]["rank_histogram"], axis=0), out["rank_histogram"])
    # all fields zero: every rank is a tie among M + 1 positions, spread evenly
    dry = RankHistogram(seed=0)
    dry.accumulate(np.zeros((4, 4, 1, 50, 50), np.float32), np.zeros((4, 1, 50, 50), np.float32))
    counts = np.array(dry.compute()["rank_histogram"])
    assert counts.sum() == 10000 and np.all(np.abs(counts - 2000) < 150)
    # without ties the rank is the number of members below the truth
    ranks = observation_ranks(np.array([[0.1, 0.5, 0.9]]).reshape(1, 3, 1, 1, 1),
                              np.full((1, 1, 1, 1), 0.6), np.zeros((1, 1, 1, 1)))
    assert ranks.item() == 2


def test_calibrated_ensemble_has_spread_skill_one_and_flat_ranks():
    rng = np.random.default_rng(13)
    members = rng.normal(size=(4, 5, 2, 64, 64)).astype(np.float32)  # truth and members i.i.d. N(0, 1)
    truth = rng.normal(size=(4, 2, 64, 64)).astype(np.float32)
    spread = SpreadSkill()
    spread.accumulate(members, truth)
    out = spread.compute()
    assert out["ratio"] == pytest.approx(1.0, abs=0.02)
    assert out["spread"] == pytest.approx(1.0, abs=0.02)
    assert out["rmse"] == pytest.approx(math.sqrt(6 / 5), abs=0.02)  # error of the mean: σ²(1 + 1/M)
    hist = RankHistogram()
    hist.accumulate(members, truth)
    counts = np.array(hist.compute()["rank_histogram"])
    assert np.all(np.abs(counts / counts.mean() - 1) < 0.05)
    # an under-dispersive ensemble (members too close together) has ratio < 1
    narrow = SpreadSkill()
    narrow.accumulate(0.3 * members, truth)
    assert narrow.compute()["ratio"] < 0.5


# --------------------------------------------------------------------------------------------- streaming, state

def _assert_same_scores(a, b, rel=1e-12):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same_scores(a[key], b[key], rel)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same_scores(x, y, rel)
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=rel, abs=1e-15)
    else:
        assert a == b


def test_streaming_in_batches_equals_one_batch():
    forecast, truth = _ensemble(np.random.default_rng(14), b=5, m=3, t=3, h=32, w=32)
    whole = Scorer(fss_scales=(1, 5))
    whole.accumulate(forecast, truth)
    split = Scorer(fss_scales=(1, 5))
    for a, b in ((0, 2), (2, 3), (3, 5)):
        split.accumulate(forecast[a:b], truth[a:b])
    one, three = whole.compute(), split.compute()
    _assert_same_scores(one, three)
    assert one["counts"] == three["counts"] and one["rank_histogram"] == three["rank_histogram"]


def test_state_round_trip_and_resume(tmp_path):
    forecast, truth = _ensemble(np.random.default_rng(15), b=4, m=2, t=3, h=32, w=32)
    reference = Scorer(fss_scales=(1, 3))
    reference.accumulate(forecast, truth)

    first = Scorer(fss_scales=(1, 3))
    first.accumulate(forecast[:2], truth[:2])
    np.savez(tmp_path / "state.npz", **first.state_dict())
    resumed = Scorer(fss_scales=(1, 3))
    with np.load(tmp_path / "state.npz", allow_pickle=False) as saved:
        resumed.load_state_dict(dict(saved))
    assert resumed.compute() == first.compute()
    resumed.accumulate(forecast[2:], truth[2:])
    _assert_same_scores(reference.compute(), resumed.compute())

    other = Scorer(fss_scales=(1, 5))
    with pytest.raises(InputError, match="settings"):
        other.load_state_dict(first.state_dict())

    path = resumed.save_state(tmp_path / "scorer.state")  # any suffix; written atomically
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scorer.state", "state.npz"]
    again = Scorer(fss_scales=(1, 3))
    again.load_state(path)
    assert again.compute() == resumed.compute()
    (tmp_path / "broken.npz").write_bytes(b"not a state")
    with pytest.raises(InputError, match="cannot read scorer state"):
        again.load_state(tmp_path / "broken.npz")


def test_per_lead_time_entries_are_consistent_with_totals():
    forecast, truth = _ensemble(np.random.default_rng(16), b=2, m=3, t=5, h=32, w=32)
    scorer = Scorer(fss_scales=(1, 5))
    scorer.accumulate(forecast, truth)
    out = scorer.compute()
    lead = out["per_lead_time"]
    assert len(lead["mse"]) == 5 and len(lead["csi"]["74"]) == 5 and len(lead["fss"]["133"]["5"]) == 5
    assert len(lead["rank_histogram"]) == 5 and len(lead["spread_skill"]["ratio"]) == 5
    # equal pixel and frame counts per lead: the plain average of per-lead values is the total
    for key in ("mse", "mae", "ssim"):
        assert np.mean(lead[key]) == pytest.approx(out[key], rel=1e-12)
        assert np.mean(out["ensemble_mean"]["per_lead_time"][key]) == pytest.approx(out["ensemble_mean"][key])
    for pool in ("pool1", "pool4", "pool16"):
        assert np.mean(lead["crps"][pool]) == pytest.approx(out["crps"][pool], rel=1e-12)
    assert np.mean(np.square(lead["spread_skill"]["rmse"])) == pytest.approx(out["spread_skill"]["rmse"] ** 2)
    # per lead MSE by hand for lead 3
    assert lead["mse"][3] == pytest.approx(float(np.mean((forecast[:, :, 3] - truth[:, None, 3]) ** 2)), rel=1e-6)


def test_ensemble_mean_block_scores_the_member_mean():
    forecast, truth = _ensemble(np.random.default_rng(17), b=2, m=4, t=2, h=32, w=32)
    scorer = Scorer(fss_scales=(1,))
    scorer.accumulate(forecast, truth)
    out = scorer.compute()
    mean = forecast.mean(axis=1)
    assert out["ensemble_mean"]["mse"] == pytest.approx(float(np.mean((mean - truth) ** 2)), rel=1e-6)
    assert out["mse"] == pytest.approx(float(np.mean((forecast - truth[:, None]) ** 2)), rel=1e-6)
    assert out["ensemble_mean"]["mse"] < out["mse"]  # averaging removes the independent member noise
    deterministic = Contingency()
    deterministic.accumulate(mean, truth)
    assert out["ensemble_mean"]["csi"] == deterministic.compute()["csi"]
    assert set(out["ensemble_mean"]) >= {"csi", "pod", "sucr", "bias", "bias_official", "csi_pool4",
                                         "csi_pool16", "mse", "mae", "ssim", "fss", "per_lead_time"}


# --------------------------------------------------------------------------------------------- bad input, names

def test_bad_inputs_give_one_line_errors():
    forecast, truth = _ensemble(np.random.default_rng(18), b=1, m=2, t=2, h=16, w=16)
    scorer = Scorer(fss_scales=(1,))
    with pytest.raises(InputError, match="disagree"):
        scorer.accumulate(forecast, truth[:, :1])
    with pytest.raises(InputError, match="NaN"):
        bad = forecast.copy()
        bad[0, 0, 0, 0, 0] = np.nan
        scorer.accumulate(bad, truth)
    scorer.accumulate(forecast, truth)
    with pytest.raises(InputError, match="members"):
        scorer.accumulate(forecast[:, :1], truth)
    with pytest.raises(InputError, match="0–1 scale"):
        Scorer().accumulate(forecast * 255, truth * 255)
    with pytest.raises(InputError, match="floating-point"):
        Scorer().accumulate((forecast * 255).astype(np.uint8), truth)
    with pytest.raises(InputError, match="nothing to score"):
        Scorer().compute()
    with pytest.raises(ConfigError, match="pooling size"):
        Scorer(pools=(0,))
    with pytest.raises(ConfigError, match="FSS scales"):
        Scorer(fss_scales=(2.5,))


def test_metric_lookup_by_name():
    assert isinstance(get_metric("csi", pool=4), Contingency)
    assert get_metric("CRPS", pool=16).settings() == {"pool": 16}
    with pytest.raises(ConfigError, match="valid metrics: contingency, csi"):
        get_metric("accuracy")


# --------------------------------------------------------------------------------------------- plots

def test_score_plots_are_written_as_png(tmp_path):
    from PIL import Image

    from prediff.verification.plots import plot_csi_by_lead_time, write_score_plots

    forecast, truth = _ensemble(np.random.default_rng(19), b=2, m=4, t=3, h=32, w=32)
    results = {}
    for label, fc in (("model", forecast), ("persistence", np.repeat(truth[:, :1], 3, axis=1))):
        scorer = Scorer(fss_scales=(1,))
        scorer.accumulate(fc, truth)
        results[label] = scorer.compute()
    paths = write_score_plots(results, tmp_path / "plots", lead_minutes=[10, 20, 30])
    assert [p.name for p in paths] == ["csi_by_threshold.png", "csi_pool16_by_threshold.png",
                                       "csi_by_lead_time.png", "reliability.png", "rank_histogram.png"]
    for path in paths:
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in paths)
    with pytest.raises(InputError, match="threshold '75'"):
        plot_csi_by_lead_time(results, tmp_path / "bad.png", threshold="75")
    assert not (tmp_path / "bad.png").exists()
