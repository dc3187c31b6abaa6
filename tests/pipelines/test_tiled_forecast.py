"""Domains larger than the model's 128 x 128 window: the window layout and blending weights (plain NumPy), and
forecasts of a 256 x 384 domain with the bundled demo model: seams, a storm crossing a seam, memory bound (the
networks only ever see one window and at most `sample.member_batch` members), progress, and the CLI and API paths."""
import datetime as dt
import json

import h5py
import numpy as np
import pytest
from conftest import compiled_mode

from prediff.errors import InputError
from prediff.pipelines.tiled_forecast import (axis_weights, seam_boundaries, seam_steps, tile_layout,
                                              window_starts)


# ---------------------------------------------------------------------------------------------------------------
# layout and weights, no networks


@pytest.mark.parametrize("overlap", [0, 8, 16, 32, 48, 64])
def test_windows_cover_each_axis_with_at_least_the_overlap_and_no_more_windows_than_needed(overlap):
    for length in range(128, 1025, 8):
        starts = window_starts(length, 128, overlap, 8)
        assert starts[0] == 0 and starts[-1] + 128 == length
        assert all(s % 8 == 0 for s in starts)
        gaps = np.diff(starts)
        assert np.all(gaps > 0) and np.all(gaps <= 128 - overlap)  # every overlap at least the one asked for
        if len(starts) > 1:  # one window fewer could not reach the end with that overlap
            assert (len(starts) - 2) * (128 - overlap) < length - 128


@pytest.mark.parametrize("starts", [(0,), (0, 96), (0, 88, 168, 256), (0, 64, 128), (0, 8), (0, 48, 104)])
def test_blending_weights_add_up_to_one_are_one_inside_and_fall_smoothly_to_zero_at_inner_edges(starts):
    weights = axis_weights(starts, 128)
    length = starts[-1] + 128
    total = np.zeros(length)
    for s, w in zip(starts, weights):
        assert w.shape == (128,) and np.all(w > 0) and np.all(w <= 1 + 1e-6)
        total[s:s + 128] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    cover = np.zeros(length, int)
    for s in starts:
        cover[s:s + 128] += 1
    for k, (s, w) in enumerate(zip(starts, weights)):
        single = cover[s:s + 128] == 1
        np.testing.assert_allclose(w[single], 1.0, atol=1e-6)  # where a window is alone its forecast is kept
        if k > 0:
            assert w[0] < 0.01  # an edge shared with a neighbour: the window's weight has fallen to ~0
        else:
            assert w[0] == pytest.approx(1.0)  # the domain's own edge keeps the window's forecast
        if k + 1 < len(starts):
            assert w[-1] < 0.01
        ramp = min(min(128 - (b - a) for a, b in zip(starts, starts[1:])), 64) if len(starts) > 1 else 128
        assert np.abs(np.diff(w)).max() <= 1.6 / ramp  # smooth: no step, a slope of about π/2 over the ramp


def test_the_layout_pads_to_whole_latent_cells_and_refuses_what_the_model_cannot_take():
    layout = tile_layout(130, 300, 128, 32, 8)
    assert (layout.padded_height, layout.padded_width) == (136, 304)
    assert layout.tops == (0, 8) and layout.lefts == (0, 88, 176) and layout.count == 6
    assert tile_layout(128, 128, 128, 32, 8).count == 1
    with pytest.raises(InputError, match=r"100x300 pixels; the model needs at least 128x128"):
        tile_layout(100, 300, 128, 32, 8)
    for bad in (12, 72):
        with pytest.raises(InputError, match="multiple of 8 from 0 to 64"):
            tile_layout(256, 256, 128, bad, 8)


def test_seam_statistic_sees_a_hard_seam_and_not_a_smooth_field():
    layout = tile_layout(128, 224, 128, 32, 8)  # windows at x 0 and 96: edges at 96 and 128
    edges, inside = seam_boundaries(layout.lefts, 128, 224)
    assert edges.tolist() == [96, 128] and inside.min() >= 1 and inside.max() <= 223
    assert not set(inside.tolist()) & set(range(96, 129))
    x = np.linspace(0, 4 * np.pi, 224)
    smooth = np.broadcast_to(np.sin(x), (2, 128, 224)).copy()
    steps = seam_steps(smooth, layout)
    assert np.all(steps["edges"] <= 1.1 * steps["beside"]) and steps["edges"].max() <= 1.1 * steps["inside"].max()
    smooth[..., 128:] += 0.5  # a window that disagrees, pasted without blending
    steps = seam_steps(smooth, layout)
    assert steps["edges"][1] > 5 * steps["beside"][1] and steps["edges"].max() > 5 * steps["inside"].mean()


# ---------------------------------------------------------------------------------------------------------------
# forecasts with the demo model

H, W = 256, 384
STORM_ROW, STORM_COL, STORM_SPEED = 40, 122, 2.0  # the crossing storm's centre at the last context frame; px/frame


def _cell(frames, y, x, radius, peak, u):
    """A synthetic convective cell (a core inside an anvil, as the demo model was trained on) moving right at u
    px per frame; its centre at (y, x) in frame 6 (the last context frame)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    out = np.zeros((frames, H, W))
    for t in range(frames):
        r2 = ((yy - y) ** 2 + (xx - (x + u * (t - 6))) ** 2) / radius ** 2
        out[t] = peak * (0.55 * np.exp(-0.5 * r2) + 0.45 * np.exp(-4.5 * r2))
    return out


def _domain():
    """(13, 256, 384) digital VIL: cells spread over the domain and one crossing the window edge at x = 128."""
    rng = np.random.default_rng(3)
    field = _cell(13, STORM_ROW, STORM_COL, 10.0, 190.0, STORM_SPEED)
    for _ in range(9):
        field += _cell(13, rng.uniform(20, H - 20), rng.uniform(20, W - 20), rng.uniform(6, 12),
                       rng.uniform(60, 200), rng.uniform(-2, 2))
    field[field < 4] = 0
    return np.clip(field, 0, 254).astype(np.float32)


SETTINGS = {"sample.samples": 2, "sample.steps": 4, "sample.member_batch": 1, "sample.align": "avg_x"}


@pytest.fixture(scope="module")
def demo():
    import prediff
    from prediff.config.forecast_settings import forecast_config
    from prediff.runtime import setup_runtime

    model = prediff.load_model("demo")
    settings = forecast_config(model.config, None, [], SETTINGS)
    setup_runtime(settings.device, settings.seed)
    return model, settings


class _Spy:
    """Records the shapes the networks are given: pixels encoded, latents per solver step, latents decoded."""

    def __init__(self):
        self.encoded, self.stepped, self.decoded = [], [], []

    def install(self, monkeypatch):
        import prediff.pipelines.forecast as forecast

        spy, base = self, forecast.Forecaster

        class Watched(base):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                encode, decode, step = self.encode, self.decode, self.sampler._step

                def enc(x):
                    spy.encoded.append(tuple(x.shape))
                    return encode(x)

                def dec(z):
                    spy.decoded.append(tuple(z.shape))
                    return decode(z)

                def stp(z, *rest):
                    spy.stepped.append(tuple(z.shape))
                    return step(z, *rest)

                self.encode, self.decode, self.sampler._step = enc, dec, stp

        monkeypatch.setattr(forecast, "Forecaster", Watched)


@pytest.fixture(scope="module")
def tiled(demo):
    """The 256 x 384 domain forecast once: (frames, result, spy, progress count)."""
    from prediff.pipelines.forecast import run_forecast

    model, settings = demo
    frames = _domain() / 255.0
    spy, calls = _Spy(), []
    with pytest.MonkeyPatch.context() as mp, compiled_mode():  # 12 windows: compiled is faster
        spy.install(mp)
        result = run_forecast(model, settings, frames[:7], frames[7:], lambda: calls.append(1))
    return frames, result, spy, len(calls)


def test_a_large_domain_is_forecast_whole_one_window_and_member_batch_at_a_time(tiled, demo):
    frames, result, spy, progress = tiled
    model, settings = demo
    layout = result.layout
    assert result.members.shape == (2, 6, H, W) and np.isfinite(result.members).all()
    assert layout.grid == (3, 4) and layout.count == 12
    steps = result.network_evaluations
    # the networks never see more than one window; the UNet no more members than sample.member_batch (1), the
    # decoder one window's members
    assert spy.encoded == [(1, 7, 128, 128, 1)] * layout.count
    assert spy.stepped == [(1, 6, 16, 16, 4)] * (layout.count * steps * 2)
    assert spy.decoded == [(2, 6, 16, 16, 4)] * layout.count
    assert progress == layout.count * steps * 2  # every solver step of every window and member call
    assert len(result.window_targets) == layout.count and result.y_hat == pytest.approx(np.mean(
        result.window_targets))


def test_no_step_at_window_edges_larger_than_inside_the_windows(tiled):
    frames, result, _, _ = tiled
    members = np.clip(result.members, 0, 1) * 255.0
    steps = seam_steps(members, result.layout)
    edges, beside, inside = steps["edges"], steps["beside"], steps["inside"]
    # the mean |difference of neighbouring pixels| across each window edge line (over members, frames and the line)
    # is no larger than across the lines within 4 pixels of it: a seam is a line standing out from its
    # neighbours. Windows pasted without overlap stood out 5.7 times on average, 6.8 at most; blended, 0.87-1.10
    # on average and 1.5 at most (benchmarks.tiled_forecast --seams, docs/large-domains.md)
    assert len(edges) == 2 * 2 + 3 * 1 + 2 and inside.size > 100
    assert np.all(edges <= 1.5 * beside), (edges, beside)
    assert np.mean(edges / beside) <= 1.15, (edges, beside)


@pytest.mark.compiled
def test_a_storm_crossing_a_window_edge_stays_one_storm_where_a_single_window_puts_it(tiled, demo):
    from scipy import ndimage

    from prediff.pipelines.forecast import run_forecast

    frames, result, _, _ = tiled
    model, settings = demo
    first = np.clip(result.members[:, 0], 0, 1).mean(0) * 255.0  # ensemble mean, 10 minutes ahead
    # one storm: the region above 40 around the storm's centre reaches across the edge at x = 128
    labels, _ = ndimage.label(first > 40)
    storm = labels == labels[STORM_ROW, int(STORM_COL + STORM_SPEED)]
    assert labels[STORM_ROW, int(STORM_COL + STORM_SPEED)] > 0
    cols = np.flatnonzero(storm.any(axis=0))
    assert cols.min() < 120 and cols.max() > 132
    # along the storm's row no step at the window edges (x = 88, 128) beyond the steps inside the storm
    row = first[STORM_ROW - 3:STORM_ROW + 4].mean(0)
    steps = np.abs(np.diff(row))
    storm_steps = steps[cols.min():cols.max()]
    assert max(steps[87], steps[127]) <= storm_steps.max()
    # and the storm sits where a single window centred on it puts it (its centre of mass within 2 px)
    window = (slice(None), slice(0, 128), slice(60, 188))
    alone = run_forecast(model, settings, frames[:7][window], frames[7:][window]).members
    alone_first = np.clip(alone[:, 0], 0, 1).mean(0) * 255.0
    mask = storm[0:128, 60:188]
    tiled_centre = np.array(ndimage.center_of_mass(first[0:128, 60:188] * mask))
    alone_centre = np.array(ndimage.center_of_mass(alone_first * mask))
    assert np.abs(tiled_centre - alone_centre).max() <= 2.0, (tiled_centre, alone_centre)


@pytest.mark.compiled
def test_one_window_through_the_tiled_path_is_exactly_the_single_frame_forecast(demo):
    """A window covering the whole domain draws the same noise as a plain forecast: the same members."""
    from prediff.pipelines.forecast import AlignmentRequest, Forecaster, alignment_target
    from prediff.pipelines.tiled_forecast import forecast_tiled

    model, settings = demo
    frames = _domain()[:, :128, 64:192] / 255.0
    forecaster = Forecaster(model, settings.sample)
    request = AlignmentRequest.from_config(settings.sample)
    y_hat = alignment_target(request, frames[:7], None)
    direct = forecaster.run(frames[None, :7], np.array([y_hat]), [5])[0]
    layout = tile_layout(128, 128, 128, 32, 8)
    through = forecast_tiled(forecaster, layout, frames[:7], None, 5, lambda c, t: alignment_target(request, c, t))
    np.testing.assert_array_equal(through.members, direct)


def test_sample_forecasts_an_ungridded_file_larger_than_the_window(tmp_path):
    from typer.testing import CliRunner

    from prediff.cli.app import app

    frames = _domain()[:, :136, :256].astype(np.uint8)  # (T, H, W): 136 x 256, no map grid
    source = tmp_path / "large.h5"
    with h5py.File(source, "w") as h5:
        h5.create_dataset("vil", data=frames)
    out = tmp_path / "fc"
    args = ["sample", "--input", str(source), "--out", str(out), "--samples", "1", "--steps", "2",
            "--reference-time", "2024-05-01T12:00", "--json"]
    result = CliRunner().invoke(app, args + ["--tile-overlap", "16"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["windows"] == 6 and report["tile_overlap"] == 16
    import xarray as xr

    with xr.open_dataset(out / "forecast.nc") as ds:
        assert ds["vil"].shape == (1, 6, 136, 256) and ds.attrs["tile_windows"] == "2 x 3"
        assert int(ds.attrs["tile_overlap_px"]) == 16
    bad = CliRunner().invoke(app, args + ["--tile-overlap", "20", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "multiple of 8" in bad.output and not (tmp_path / "bad").exists()
    small = tmp_path / "small.h5"
    with h5py.File(small, "w") as h5:
        h5.create_dataset("vil", data=frames[:, :100])
    refused = CliRunner().invoke(app, ["sample", "--input", str(small), "--out", str(tmp_path / "s")])
    assert refused.exit_code == 2 and "100x256 pixels; the model needs at least 128x128" in refused.output
    assert "Traceback" not in refused.output and not (tmp_path / "s").exists()


def test_the_api_forecasts_an_array_larger_than_the_window_and_refuses_a_smaller_one(demo):
    model, _ = demo
    frames = _domain()[:7, :128, :200] / 255.0
    when = dt.datetime(2024, 5, 1, 12)
    fc = model.forecast(frames, reference_time=when, scale="0-1", samples=1, steps=2, tile_overlap=48)
    assert fc["vil"].shape == (1, 6, 128, 200) and fc.attrs["tile_windows"] == "1 x 2"
    with pytest.raises(InputError, match="100x200 pixels; the model needs at least 128x128"):
        model.forecast(frames[:, :100], reference_time=when, scale="0-1", samples=1, steps=2)


def test_progress_names_the_window_being_denoised():
    from prediff.cli.progress import COMPILING, StepsDisplay

    with StepsDisplay("denoising") as display:
        advance = display.start(6, windows=3)  # 3 windows one after another, 2 solver steps each
        assert display.progress.tasks[0].description == COMPILING
        seen = []
        for _ in range(6):
            advance()
            seen.append(display.progress.tasks[0].description)
        assert seen == [f"denoising window {k}/3" for k in (1, 1, 2, 2, 3, 3)]
        assert display.progress.tasks[0].completed == 6


def test_pictures_of_large_domains_keep_their_shape_and_stay_small(tmp_path):
    from PIL import Image

    from prediff.visualization.animation import render_frames
    from prediff.visualization.canvas import LABEL_H, panel_size
    from prediff.visualization.summary import write_summary_png

    rng = np.random.default_rng(0)
    for (h, w), expected in (((256, 384), (384, 256)), ((700, 1000), (500, 350)), ((128, 128), (256, 256))):
        context = rng.random((7, h, w), dtype=np.float32)
        members = rng.random((2, 6, h, w), dtype=np.float32)
        assert panel_size((h, w)) == (expected[0], expected[1] + LABEL_H)
        frame = np.asarray(render_frames(context, members, [10 * k for k in range(1, 7)])[0].convert("RGB"))
        # a context frame has no member panel: that panel is drawn empty, at the field's own size
        empty = np.all(frame == (248, 248, 248), axis=-1)
        assert empty.sum() >= 2 * expected[0] * expected[1] - 4 * (expected[0] + expected[1])
        png = write_summary_png(tmp_path / f"{h}x{w}.png", context, members, lead_minutes=list(range(10, 70, 10)))
        width, height = Image.open(png).size
        assert width >= 7 * expected[0] and width * height < 60e6


def test_the_benchmark_counts_windows_and_noise_draws_as_the_forecast_makes_them():
    """`benchmarks.tiled_forecast` extrapolates a domain's cost from its windows and its noise draws."""
    from types import SimpleNamespace

    from benchmarks.tiled_forecast import layouts, noise_draws

    # the table of docs/large-domains.md: 1,024 km (341 px) and 2,048 km (683 px)
    assert layouts(1024, (0, 16, 32, 48, 64)) == {"0": 9, "16": 9, "32": 16, "48": 16, "64": 25}
    assert layouts(2048, (0, 32, 64)) == {"0": 36, "32": 49, "64": 100}
    # the starting noise, and fresh noise at every step only for stochastic samplers
    assert noise_draws(SimpleNamespace(sampler="dpmpp", steps=20, eta=1.0), 1000) == 21
    assert noise_draws(SimpleNamespace(sampler="dpmpp", steps=20, eta=0.0), 1000) == 1
    assert noise_draws(SimpleNamespace(sampler="ddim", steps=50, eta=0.5), 1000) == 51
    assert noise_draws(SimpleNamespace(sampler="ddpm", steps=50, eta=0.0), 1000) == 1001
