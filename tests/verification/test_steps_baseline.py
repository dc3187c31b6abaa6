"""The STEPS baseline: pysteps' STEPS on the context, reproducible by seed, scored beside the model."""
import contextlib
import io
import json

import numpy as np
import pytest

from prediff.baselines import get_baseline
from prediff.baselines.optical_flow import estimate_motion
from prediff.config import ScoreConfig
from prediff.vil_scale import digital_to_kg_m2, kg_m2_to_digital
from prediff.errors import ConfigError, InputError

SIZE = 64


def _context(n=1, t_in=5, seed=0):
    """A blob moving 2 px right and 1 px down per frame, with some texture (0–1 VIL)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    frames = np.empty((n, t_in, SIZE, SIZE), np.float32)
    for c in range(n):
        texture = rng.uniform(0.7, 1.0, (SIZE, SIZE))
        for t in range(t_in):
            blob = np.exp(-((yy - 24 - t) ** 2 + (xx - 18 - 2 * t) ** 2) / 120.0)
            frames[c, t] = np.clip(0.75 * blob * texture, 0, 1)
    return frames


def test_steps_members_equal_pysteps_called_directly():
    from pysteps.nowcasts import steps as pysteps_steps

    context = _context()[0]
    baseline = get_baseline("steps", n_cascade_levels=4)
    got = baseline.extrapolate(context, 3, members=3, seed=11)
    assert got.shape == (3, 3, SIZE, SIZE) and got.dtype == np.float32

    # the same input, prepared by hand: VIL in kg m-2 → dB with the 16-digital threshold, zeros 5 dB below
    threshold = float(digital_to_kg_m2(np.float64(16.0)))
    threshold_db = 10 * np.log10(threshold)
    kg = digital_to_kg_m2(context[-3:] * 255.0).astype(np.float64)
    db = np.where(kg >= threshold, 10 * np.log10(np.maximum(kg, threshold)), threshold_db - 5)
    dy, dx = estimate_motion(context)
    with contextlib.redirect_stdout(io.StringIO()):
        direct = pysteps_steps.forecast(
            db, np.stack([dx, dy]).astype(np.float64), 3, n_ens_members=3, n_cascade_levels=4,
            precip_thr=threshold_db, kmperpixel=3.0, timestep=10.0, decomp_method="fft",
            bandpass_filter_method="gaussian", noise_method="nonparametric", ar_order=2, vel_pert_method="bps",
            probmatching_method="cdf", mask_method="incremental", seed=11, num_workers=1)
    back = 10.0 ** (direct / 10.0)
    back = np.where(np.isfinite(back) & (back >= threshold), back, 0.0)
    expected = kg_m2_to_digital(back) / np.float32(255.0)
    np.testing.assert_array_equal(got, expected)
    assert got.max() > 0.3  # the storm is there, not a dry forecast


def test_steps_is_reproducible_by_seed_and_moves_with_the_storm():
    contexts = _context(n=2)
    baseline = get_baseline("steps", n_cascade_levels=4)
    first = baseline.forecast(contexts, 3, members=2, seeds=[5, 6])
    again = baseline.forecast(contexts, 3, members=2, seeds=[5, 6])
    np.testing.assert_array_equal(first, again)
    other = baseline.forecast(contexts, 3, members=2, seeds=[7, 6])
    assert not np.array_equal(first[0], other[0]) and np.array_equal(first[1], other[1])
    assert not np.array_equal(first[0, 0], first[0, 1])  # the members differ (stochastic perturbations)
    # a case's members do not depend on its batch
    np.testing.assert_array_equal(baseline.forecast(contexts[1:], 3, members=2, seeds=[6]), first[1:])
    # the ensemble mean's centre of mass moves right, with the storm (≈ 2 px per step)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    mean = first[0].mean(axis=0)
    centre = [(m * xx).sum() / m.sum() for m in mean]
    assert 1.0 < centre[2] - centre[1] < 3.5


def test_steps_settings_are_recorded_and_bad_options_refused():
    settings = get_baseline("steps").settings()
    for key in ("n_cascade_levels", "noise_method", "vel_pert_method", "motion_method", "vil_threshold_digital",
                "pysteps_version", "seed"):
        assert key in settings
    assert settings["n_cascade_levels"] == 6 and settings["noise_method"] == "nonparametric"
    with pytest.raises(ConfigError, match="valid"):
        get_baseline("steps", cascade=3)
    with pytest.raises(InputError, match="frame"):
        get_baseline("steps").forecast(np.zeros((1, 2, SIZE, SIZE), np.float32), 2, members=2)
    dry = get_baseline("steps").forecast(np.zeros((1, 3, SIZE, SIZE), np.float32), 2, members=2, seeds=[0])
    assert dry.shape == (1, 2, 2, SIZE, SIZE) and not dry.any()


def test_a_context_steps_cannot_model_falls_back_to_extrapolation_and_is_noted():
    from prediff.pipelines import evaluate

    static = np.zeros((1, 5, SIZE, SIZE), np.float32)
    static[0, :, 20:24, 20:24] = 0.3  # constant in time: pysteps' AR fit is singular
    baseline = get_baseline("steps")
    out = baseline.forecast(static, 2, members=3, seeds=[0])
    assert baseline.fallbacks == 1
    flow = get_baseline("optical_flow").forecast(static, 2)
    np.testing.assert_array_equal(out, np.repeat(flow[:, None], 3, axis=1))
    evaluation = evaluate.Evaluation(ScoreConfig(pools=(), fss_scales=(1,), resamples=20, baselines=("steps",)))
    evaluation.add(static, static[:, :2], np.repeat(static[:, None, :2], 2, axis=1))
    assert any("steps: 1 case(s)" in n for n in evaluation.scores({})["notes"])


def test_evaluation_scores_steps_with_the_model_members_and_intervals(tmp_path):
    from prediff.pipelines import evaluate
    from prediff.verification.cases import load_case_tables

    contexts = _context(n=3, t_in=5, seed=1)
    rng = np.random.default_rng(2)
    truths = np.clip(contexts[:, -1:] + rng.normal(0, 0.05, (3, 3, SIZE, SIZE)), 0, 1).astype(np.float32)
    members = np.clip(truths[:, None] + rng.normal(0, 0.1, (3, 4, 3, SIZE, SIZE)), 0, 1).astype(np.float32)
    cfg = ScoreConfig(pools=(4,), fss_scales=(1,), resamples=50)
    evaluation = evaluate.Evaluation(cfg, seed=3)
    evaluation.add(contexts, truths, members, events=["a", "a", "b"], seeds=[3, 4, 5])
    scores = evaluation.scores({})
    steps = scores["baselines"]["steps"]
    assert steps["n_members"] == 4 and scores["baselines"]["persistence"]["n_members"] == 1
    assert scores["settings"]["baselines"]["steps"]["n_cascade_levels"] == 6
    assert set(scores["differences"]) == {"persistence", "optical_flow", "steps"}
    assert scores["intervals"]["events"] == 2 and steps["intervals"]["events"] == 2
    assert steps["exceedance"]["74"]["brier"] is not None
    # STEPS got case seeds 3, 4, 5: its members are those of the baseline called on its own
    alone = get_baseline("steps").forecast(contexts[2:], 3, members=4, seeds=[5])
    table = evaluation.case_tables()["steps"]
    single = evaluate.Evaluation(cfg, seed=3)
    single.add(contexts[2:], truths[2:], members[2:], seeds=[5])
    assert table.crps_sum[2] == single.case_tables()["steps"].crps_sum[0]
    assert alone.shape == (1, 4, 3, SIZE, SIZE)
    json.dumps(scores, allow_nan=False)
    paths = evaluate.write_outputs(tmp_path, scores, cases=evaluation.case_tables())
    assert (tmp_path / "cases.npz") in paths and (tmp_path / "reliability.png") in paths
    assert set(load_case_tables(tmp_path / "cases.npz")) == {"model", "persistence", "optical_flow", "steps"}


def test_a_models_stored_config_does_not_choose_the_baselines_or_picture_members():
    import dataclasses

    from prediff.config import Config
    from prediff.config.forecast_settings import forecast_config

    old = Config()
    old = dataclasses.replace(old, score=dataclasses.replace(old.score, baselines=("persistence", "optical_flow")),
                              sample=dataclasses.replace(old.sample, gif_members=4))
    settings = forecast_config(old)
    assert settings.score.baselines == ("persistence", "optical_flow", "steps")
    assert settings.sample.gif_members == 8
    chosen = forecast_config(old, overrides=["score.baselines=[persistence]", "sample.gif_members=2"])
    assert chosen.score.baselines == ("persistence",) and chosen.sample.gif_members == 2
