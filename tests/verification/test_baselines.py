"""Baselines: persistence and optical-flow extrapolation (motion recovery, advection, scoring)."""
import numpy as np
import pytest
from scipy import ndimage

from prediff.baselines import OpticalFlow, Persistence, estimate_motion, get_baseline, semi_lagrangian
from prediff.errors import ConfigError, InputError
from prediff.verification import Scorer


def _landscape(seed, size=320):
    """A large field of smooth storms on 0–1 with clear air in between (about 15% rain)."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).random((size, size)), 5)
    field = (field - field.min()) / (field.max() - field.min())
    return np.clip((field - 0.6) * 4, 0, 1)


def _translated(seed, shift, n_frames=13, size=96):
    """Frames (n_frames, size, size): a window on a fixed landscape, the storms moving by `shift` (dy, dx) pixels
    per frame (content at pixel p in frame k is at p + shift in frame k + 1)."""
    land = _landscape(seed)
    y0 = x0 = (land.shape[0] - size) // 2
    dy, dx = shift
    return np.stack([land[y0 - k * dy: y0 - k * dy + size, x0 - k * dx: x0 - k * dx + size]
                     for k in range(n_frames)]).astype(np.float32)


def test_persistence_repeats_the_last_frame_and_is_perfect_on_a_static_field():
    field = _landscape(0)[:64, :64].astype(np.float32)
    context = np.repeat(field[None, None], 7, axis=1)  # (B = 1, T_in = 7, H, W), nothing moves
    out = Persistence().forecast(context, 6)
    assert out.shape == (1, 6, 64, 64) and out.dtype == np.float32
    assert np.array_equal(out[0, 3], field)
    scorer = Scorer(fss_scales=(1, 5))
    scorer.accumulate(out, np.repeat(field[None, None], 6, axis=1))
    scores = scorer.compute()
    assert scores["mse"] == 0.0 and scores["crps"]["pool1"] == 0.0
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert all(v == pytest.approx(1.0, abs=1e-4) for k, v in scores["csi"].items() if k in ("16", "74"))
    moving = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5) / 120
    assert np.array_equal(get_baseline("persistence").extrapolate(moving[1], 2), moving[1, [2, 2]])


def test_semi_lagrangian_shifts_by_whole_pixels_and_fills_the_inflow():
    field = _landscape(1)[:40, :40].astype(np.float32)
    motion = np.zeros((2, 40, 40), np.float32)
    motion[0], motion[1] = 1.0, -2.0  # one pixel down, two left per step
    out = semi_lagrangian(field, motion, 3)
    for k in (1, 2, 3):
        assert np.allclose(out[k - 1, k:, : 40 - 2 * k], field[: 40 - k, 2 * k:], atol=1e-6)
        assert np.all(out[k - 1, : k - 1] == 0) and np.all(out[k - 1, :, 40 - 2 * k + 1:] == 0)
    assert out.min() >= 0 and out.max() <= field.max() + 1e-6


def test_optical_flow_recovers_a_known_translation():
    frames = _translated(2, (1, 2))
    motion = estimate_motion(frames[:7])
    interior = (slice(None), slice(16, -16), slice(16, -16))
    assert np.allclose(motion[interior].mean(axis=(1, 2)), (1.0, 2.0), atol=0.05)
    assert np.median(np.abs(motion[0][interior[1:]] - 1.0)) < 0.1
    assert np.median(np.abs(motion[1][interior[1:]] - 2.0)) < 0.1


@pytest.mark.parametrize("shift", [(1, 2), (-3, 4), (0, 6)])
def test_optical_flow_forecast_beats_persistence_and_matches_the_moved_field(shift):
    frames = _translated(3, shift)
    context, future = frames[:7], frames[7:]
    flow = OpticalFlow().extrapolate(context, 6)
    still = Persistence().extrapolate(context, 6)
    assert flow.shape == (6, 96, 96) and flow.dtype == np.float32
    margin = 6 * max(abs(s) for s in shift) + 4  # inflow through the boundary is unknown
    inner = (slice(None), slice(margin, -margin), slice(margin, -margin))
    flow_error = np.abs(flow - future)[inner].mean()
    still_error = np.abs(still - future)[inner].mean()
    assert flow_error < 0.1 * still_error
    assert np.abs(flow - future)[inner].max() < 0.1
    scores = {}
    for name, forecast in (("flow", flow), ("still", still)):
        scorer = Scorer(fss_scales=(1,))
        scorer.accumulate(forecast[None], future[None])
        scores[name] = scorer.compute()
    assert scores["flow"]["csi"]["avg"] > scores["still"]["csi"]["avg"] + 0.2


def test_optical_flow_on_a_static_field_stays_put():
    field = _landscape(4)[:64, :64].astype(np.float32)
    context = np.repeat(field[None], 4, axis=0)
    assert np.abs(estimate_motion(context)).max() < 1e-3
    assert np.allclose(OpticalFlow().extrapolate(context, 3), field[None], atol=1e-3)


def test_batched_forecast_equals_per_case_extrapolation():
    cases = np.stack([_translated(5, (1, -1), n_frames=5, size=48), _translated(6, (0, 2), n_frames=5, size=48)])
    baseline = get_baseline("optical_flow", n_frames=3)
    batched = baseline.forecast(cases, 2)
    assert batched.shape == (2, 2, 48, 48)
    assert np.array_equal(batched[1], baseline.extrapolate(cases[1], 2))
    assert baseline.settings()["n_frames"] == 3


def test_bad_baseline_inputs():
    with pytest.raises(ConfigError, match="valid baselines: persistence, optical_flow"):
        get_baseline("nwp")
    with pytest.raises(InputError, match=r"\(T_in, H, W\)"):
        Persistence().extrapolate(np.zeros((4, 4)), 2)
    with pytest.raises(InputError, match="n_leads"):
        Persistence().forecast(np.zeros((1, 2, 4, 4)), 0)
    with pytest.raises(InputError, match="at least 2"):
        OpticalFlow().extrapolate(np.zeros((1, 8, 8)), 2)
    with pytest.raises(InputError, match="NaN"):
        OpticalFlow().extrapolate(np.full((2, 8, 8), np.nan), 2)
    with pytest.raises(ConfigError, match="n_frames"):
        OpticalFlow(n_frames=1)
