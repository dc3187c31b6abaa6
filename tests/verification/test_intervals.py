"""Confidence intervals: per-case totals, the bootstrap over events, paired differences."""
import numpy as np
import pytest

from prediff.errors import InputError
from prediff.verification import Scorer
from prediff.verification.bootstrap import bootstrap_intervals, paired_difference
from prediff.verification.cases import CaseRecords, CaseTable, load_case_tables, save_case_tables

THRESHOLDS = (16, 74, 133)


def _table(csi_per_case, events, pixels=1000, crps=None):
    """A CaseTable whose case i has CSI csi_per_case[i] at every threshold (100 events observed or forecast)."""
    csi = np.asarray(csi_per_case, np.float64)
    n = len(csi)
    hits = np.round(100 * csi).astype(np.int64)
    misses = (100 - hits) // 2
    fas = 100 - hits - misses
    rep = lambda a: np.repeat(a[:, None], len(THRESHOLDS), axis=1)  # noqa: E731
    crps = np.full(n, 0.1) if crps is None else np.asarray(crps, np.float64)
    return CaseTable(events=np.array(events), hits=rep(hits), misses=rep(misses), fas=rep(fas),
                     crps_sum=crps * pixels, pixels=np.full(n, pixels, np.int64), thresholds=THRESHOLDS,
                     members=1)


def _width(interval):
    return interval[1] - interval[0]


def test_case_records_pool_to_the_scorer_totals():
    rng = np.random.default_rng(0)
    truth = (rng.uniform(0, 1, (5, 2, 16, 16)) ** 2).astype(np.float32)
    forecast = np.clip(truth[:, None] + rng.normal(0, 0.15, (5, 3, 2, 16, 16)), 0, 1).astype(np.float32)
    scorer = Scorer(thresholds=THRESHOLDS, pools=(), fss_scales=(1,), resamples=50)
    scorer.accumulate(forecast[:2], truth[:2], events=["x", "x"])
    scorer.accumulate(forecast[2:], truth[2:], events=["y", "z", "z"])
    out = scorer.compute()
    table = scorer.cases.table()
    assert table.events.tolist() == ["x", "x", "y", "z", "z"]
    for k, key in enumerate(("hits", "misses", "fas")):
        assert getattr(table, key).sum(axis=0).tolist() == out["counts"]["pool1"][key]
    assert table.crps_sum.sum() / table.pixels.sum() == pytest.approx(out["crps"]["pool1"], rel=1e-6)  # float32 terms
    assert out["intervals"]["events"] == 3 and out["intervals"]["cases"] == 5
    lo, hi = out["intervals"]["csi"]["avg"]
    assert lo <= out["csi"]["avg"] <= hi


def test_case_records_survive_save_and_resume(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 1, (3, 2, 8, 8)).astype(np.float32)
    forecast = rng.uniform(0, 1, (3, 2, 2, 8, 8)).astype(np.float32)
    whole = CaseRecords(THRESHOLDS)
    whole.accumulate(forecast, truth, ["a", "b", "b"])
    part = CaseRecords(THRESHOLDS)
    part.accumulate(forecast[:1], truth[:1], ["a"])
    np.savez(tmp_path / "s.npz", **part.state_dict())
    resumed = CaseRecords(THRESHOLDS)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as saved:
        resumed.load_state_dict({k: saved[k] for k in saved.files})
    resumed.accumulate(forecast[1:], truth[1:], ["b", "b"])
    a, b = whole.table(), resumed.table()
    assert a.events.tolist() == b.events.tolist() == ["a", "b", "b"]
    assert np.array_equal(a.hits, b.hits) and np.array_equal(a.crps_sum, b.crps_sum)
    path = save_case_tables(tmp_path / "cases.npz", {"model": a})
    loaded = load_case_tables(path)["model"]
    assert loaded.events.tolist() == ["a", "b", "b"] and np.array_equal(loaded.fas, a.fas)
    assert loaded.thresholds == tuple(float(t) for t in THRESHOLDS)


def test_intervals_shrink_with_more_events():
    rng = np.random.default_rng(2)
    widths = []
    for n in (10, 160):
        table = _table(np.clip(rng.normal(0.5, 0.15, n), 0, 1), [f"e{i}" for i in range(n)])
        widths.append(_width(bootstrap_intervals(table, resamples=400, seed=0)["csi"]["avg"]))
    assert widths[1] < 0.5 * widths[0]  # ~ 1/sqrt(16) = 0.25 expected


def test_bootstrap_keeps_the_cases_of_an_event_together():
    """Two events of very different skill, 40 cases each: resampling events gives CSI anywhere from the bad
    event's to the good one's; resampling cases would give a narrow interval around their mean."""
    csi = [0.9] * 40 + [0.1] * 40
    events = ["good"] * 40 + ["bad"] * 40
    together = bootstrap_intervals(_table(csi, events), resamples=1000, seed=0)
    lo, hi = together["csi"]["74"]
    assert together["events"] == 2
    assert lo == pytest.approx(0.1, abs=0.01) and hi == pytest.approx(0.9, abs=0.01)
    # the same cases as 80 separate events: the interval is narrow
    separate = bootstrap_intervals(_table(csi, [f"e{i}" for i in range(80)]), resamples=1000, seed=0)
    assert _width(separate["csi"]["74"]) < 0.3


def test_a_model_against_itself_has_a_difference_centred_on_zero():
    rng = np.random.default_rng(3)
    table = _table(np.clip(rng.normal(0.5, 0.2, 30), 0, 1), [f"e{i // 3}" for i in range(30)],
                   crps=rng.uniform(0.05, 0.2, 30))
    same = paired_difference(table, table, resamples=500, seed=1)
    for entry in list(same["csi"].values()) + [same["crps"]]:
        assert entry["value"] == 0.0 and entry["interval"] == [0.0, 0.0] and not entry["excludes_zero"]
    # swapping the two forecasts mirrors the interval
    other = _table(np.clip(rng.normal(0.45, 0.2, 30), 0, 1), [f"e{i // 3}" for i in range(30)])
    ab = paired_difference(table, other, resamples=500, seed=1)["csi"]["avg"]
    ba = paired_difference(other, table, resamples=500, seed=1)["csi"]["avg"]
    assert ab["value"] == pytest.approx(-ba["value"])
    assert ab["interval"] == pytest.approx([-ba["interval"][1], -ba["interval"][0]])


def test_a_clearly_better_forecast_has_a_difference_excluding_zero_and_pairing_narrows_it():
    rng = np.random.default_rng(4)
    base = np.clip(rng.normal(0.5, 0.2, 40), 0.05, 0.9)  # cases differ a lot in difficulty ...
    events = [f"e{i}" for i in range(40)]
    better, worse = _table(base + 0.05, events), _table(base, events)  # ... the better one gains 0.05 on each
    diff = paired_difference(better, worse, resamples=1000, seed=0)["csi"]["avg"]
    assert diff["excludes_zero"] and diff["interval"][0] > 0
    alone = [bootstrap_intervals(t, resamples=1000, seed=0)["csi"]["avg"] for t in (better, worse)]
    assert alone[0][0] < alone[1][1]  # the unpaired intervals overlap: only the pairing shows the difference
    assert _width(diff["interval"]) < 0.25 * _width(alone[0])


def test_bootstrap_is_reproducible_and_refuses_unpaired_cases():
    table = _table(np.linspace(0.2, 0.8, 12), [f"e{i % 4}" for i in range(12)])
    assert bootstrap_intervals(table, resamples=300, seed=5) == bootstrap_intervals(table, resamples=300, seed=5)
    assert bootstrap_intervals(table, resamples=300, seed=5) != bootstrap_intervals(table, resamples=300, seed=6)
    assert bootstrap_intervals(_table([0.5, 0.6], ["one", "one"])) is None  # one event: nothing to resample
    shifted = _table(np.linspace(0.2, 0.8, 12), [f"e{(i + 1) % 4}" for i in range(12)])
    with pytest.raises(InputError, match="same cases"):
        paired_difference(table, shifted)
