"""Probabilistic verification of the exceedance probabilities (Brier, reliability, ROC), the rank histogram's
dry-pixel cut, and undefined ratios at thresholds without observed events."""
import json

import numpy as np
import pytest

from prediff.verification import Contingency, RankHistogram, Scorer
from prediff.exceedance import exceedance_probability
from prediff.verification.reliability import ExceedanceReliability, brier_decomposition, roc_area
from prediff.verification.plots import plot_reliability


def _ensemble(seed=0, b=3, m=6, t=2, size=24):
    rng = np.random.default_rng(seed)
    truth = (rng.uniform(0, 1, (b, t, size, size)) ** 2).astype(np.float32)
    members = np.clip(truth[:, None] + rng.normal(0, 0.2, (b, m, t, size, size)), 0, 1).astype(np.float32)
    return members, truth


def test_brier_decomposition_identity_and_direct_brier_score_per_threshold():
    members, truth = _ensemble()
    score = ExceedanceReliability(thresholds=(16, 74, 133, 219))
    score.accumulate(members[:1], truth[:1])
    score.accumulate(members[1:], truth[1:])
    out = score.compute()
    assert out["members"] == 6 and out["thresholds"] == [16, 74, 133, 219]
    for key, threshold in (("16", 16), ("74", 74), ("133", 133), ("219", 219)):
        entry = out[key]
        # BS = REL − RES + UNC for forecasts binned by their exact values
        assert entry["brier"] == pytest.approx(entry["reliability"] - entry["resolution"] + entry["uncertainty"],
                                               abs=1e-12)
        # the Brier score is the mean squared error of the probabilities that `sample` writes
        p = np.stack([exceedance_probability(m * np.float32(255), [threshold])[0] for m in members])
        o = (truth * np.float32(255) >= threshold).astype(np.float64)
        assert entry["brier"] == pytest.approx(np.mean((p - o) ** 2), rel=1e-6)  # p: float32 k/M
        assert entry["event_frequency"] == pytest.approx(o.mean())
        assert sum(entry["diagram"]["count"]) == o.size and len(entry["diagram"]["probability"]) == 7
        assert 0.5 < entry["roc_area"] <= 1.0  # members near the truth discriminate
    json.dumps(out, allow_nan=False)


def test_reliability_terms_by_hand():
    # M = 2: probabilities 0, 0.5, 1 given to 4, 4, 2 pixels; events observed in 0, 2, 2 of them
    count, events = np.array([4, 4, 2]), np.array([0, 2, 2])
    out = brier_decomposition(count, events)
    base = 4 / 10
    assert out["reliability"] == pytest.approx((4 * 0 + 4 * 0 + 2 * 0) / 10)  # ō_k = p_k in every bin
    assert out["resolution"] == pytest.approx((4 * base ** 2 + 4 * (0.5 - base) ** 2 + 2 * (1 - base) ** 2) / 10)
    assert out["uncertainty"] == pytest.approx(base * (1 - base))
    assert out["brier"] == pytest.approx((4 * 0.25 + 2 * 0) / 10)  # only the 0.5 bin errs, by 0.5 each
    assert out["brier_skill"] == pytest.approx(1 - out["brier"] / out["uncertainty"])
    # ROC: perfect separation gives 1, constant probabilities 0.5, undefined without events
    assert roc_area([5, 0, 5], [0, 0, 5]) == pytest.approx(1.0)
    assert roc_area([0, 10, 0], [0, 4, 0]) == pytest.approx(0.5)
    assert roc_area([3, 0, 1], [0, 0, 0]) is None
    assert brier_decomposition([0, 0], [0, 0])["brier"] is None


def test_scorer_reports_reliability_and_plots_a_diagram_per_threshold(tmp_path):
    members, truth = _ensemble(1)
    scorer = Scorer(thresholds=(16, 74), pools=(), fss_scales=(1,), resamples=20)
    scorer.accumulate(members, truth)
    out = scorer.compute()
    assert set(out["exceedance"]) == {"members", "thresholds", "16", "74"}
    path = plot_reliability({"PreDiff": out}, tmp_path / "reliability.png")
    assert path.stat().st_size > 1000


def test_bias_and_pod_are_null_where_no_event_was_observed():
    truth = np.zeros((1, 2, 16, 16), np.float32)
    truth[0, 0, :2, :2] = 100 / 255  # events at >= 16 and >= 74 only, in lead 0 only
    forecast = np.zeros((1, 1, 2, 16, 16), np.float32)
    forecast[0, 0, :, :3, :3] = 200 / 255  # false alarms at every threshold
    score = Contingency(thresholds=(16, 74, 181))
    score.accumulate(forecast, truth)
    out = score.compute()
    assert out["bias"]["181"] is None and out["bias_official"]["181"] is None and out["pod"]["181"] is None
    assert out["bias"]["16"] == pytest.approx(18 / 4, rel=1e-4)  # (4 + 14) / 4: well-defined ones unchanged
    assert out["bias"]["avg"] == pytest.approx((out["bias"]["16"] + out["bias"]["74"]) / 2)
    assert out["csi"]["181"] == 0.0 and out["sucr"]["181"] == 0.0  # defined: there were forecast events
    assert out["per_lead_time"]["bias"]["74"][1] is None  # lead 1 has no observed event at all
    scorer = Scorer(thresholds=(16, 74, 181), pools=(), fss_scales=(1,), resamples=20)
    scorer.accumulate(forecast, truth)
    notes = scorer.compute()["notes"]
    assert any("bias are null at >= 181" in n for n in notes)
    json.dumps(out, allow_nan=False)


def test_rank_histogram_leaves_out_dry_pixels_above_rank_min_zero():
    members, truth = _ensemble(2, m=4)
    members[:, :, :, :8] = 0.0  # a dry band where the truth is dry too
    truth[:, :, :8] = 0.0
    every = RankHistogram(seed=3, rank_min=0)
    every.accumulate(members, truth)
    cut = RankHistogram(seed=3, rank_min=16)
    cut.accumulate(members, truth)
    all_counts, cut_counts = np.array(every.compute()["rank_histogram"]), np.array(cut.compute()["rank_histogram"])
    assert all_counts.sum() == members.shape[0] * members.shape[2] * 24 * 24
    digital = lambda a: a * np.float32(255)  # noqa: E731
    wet = (digital(truth) >= 16) | (digital(members) >= 16).any(axis=1)
    assert cut_counts.sum() == wet.sum() < all_counts.sum()
    # the default (0 in the class, as before) is today's histogram; the pixels kept keep their ranks
    assert RankHistogram(seed=3).rank_min == 0.0
    assert np.all(cut_counts <= all_counts)
    with pytest.raises(Exception, match="rank_min"):
        RankHistogram(rank_min=-1)
