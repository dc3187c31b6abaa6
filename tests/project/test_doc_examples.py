"""Every ```python block of the README and docs/ runs, as a user would run it, and a broken one fails its test.

Each block is found by (document, index of its python block, from 0; "docs/grids.md#0" in test ids) and executed
as written, from an empty folder holding the files it names, with the names it uses but does not define given to
it. The forecasts use the bundled demo model.

| block | what its folder holds | names given |
|---|---|---|
| README.md#0, docs/formats.md#0 | forecast/ from `prediff sample` of examples/radar.h5 | |
| README.md#1, docs/api.md#0 | examples/radar.h5 | |
| docs/grids.md#0 | composite.nc: 13 frames in kg m-2 on a 2 km LAEA grid | |
| docs/inputs.md#0 | radar.nc: 13 frames of `VIL` in kg m-2, no map grid | `frames` (7, 128, 128), `last_frame_utc` |
| docs/large-domains.md#0 | | `frames` (7, 192, 128) on 0-1, `when` |
| docs/large-domains.md#1 | | |
| docs/large-domains.md#2 | forecast/forecast.nc: the forecast of block #0 | |
| docs/scoring.md#0 | scores-dpmpp/, scores-ddim/: `prediff score` of 4 synthetic cases (2 events) | |
| docs/watch.md#0 | radar/: 7 one-frame HDF5 files 10 minutes apart | |

Forecasts are made cheap without changing what a block asks for: `Model.forecast` and `run_watch` run with at
most 2 members and 2 solver steps (`_cap_forecasts`), and record what the block asked for. A block without a test
here fails `test_every_python_block_compiles_and_has_a_case`. (README.md#1 also runs in tests/pipelines/test_api.py,
in a new process beside a user's own `models` package.)
"""
import contextlib
import datetime as dt
import io
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from doc_blocks import event_frames, python_blocks, radar_netcdf
from typer.testing import CliRunner

from prediff.cli.app import app

CHEAP = 2  # members and solver steps of every forecast made here
REFERENCE = dt.datetime(2019, 7, 1, 19, 0)  # UTC of the 7th frame of the files written here (the 1st at 18:00)

#: (document, index of its python block) → the test that runs it
CASES = {}
LARGE_DOMAIN = ("docs/large-domains.md", 0)  # run by the fixture `large_domain`


def runs(*blocks):
    """The decorated test runs these (document, index) blocks: it is registered in CASES and called once for each,
    with `document` and `index`."""
    def register(test):
        for block in blocks:
            assert block not in CASES, f"{block} has two tests"
            CASES[block] = test.__name__
        return pytest.mark.parametrize("document, index", blocks, ids=[f"{d}#{i}" for d, i in blocks])(test)
    return register


def _run(repo_root, document: str, index: int, **given):
    """Executes python block `index` of `document` in the current folder with the names `given`: (its namespace,
    what it printed)."""
    source = python_blocks(repo_root)[(document, index)]
    namespace = {"__name__": "__main__", **given}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(compile(source, f"{document} (python block {index})", "exec"), namespace)  # noqa: S102 (the doc's code)
    return namespace, printed.getvalue()


def _comment_of_print(repo_root, document: str, index: int, nth: int = 0) -> str:
    """The comment after the `nth` print(...) line of a block, without a trailing "...": what it says is printed."""
    lines = [line for line in python_blocks(repo_root)[(document, index)].splitlines() if line.startswith("print(")]
    return lines[nth].split("#", 1)[1].strip().removesuffix("...").strip()


def _cap_forecasts(patch: pytest.MonkeyPatch) -> list:
    """Forecasts through `Model.forecast` and `run_watch` with at most CHEAP members and solver steps; returns the
    list receiving the options each call was given."""
    from prediff.pipelines import watch_run
    from prediff.pipelines.model import Model

    asked = []
    forecast, run_watch = Model.forecast, watch_run.run_watch

    def capped_forecast(self, context, **options):
        asked.append(dict(options))
        for key in ("samples", "steps"):  # None or absent: the model's own (8 members, 4 steps for the demo)
            options[key] = min(options.get(key) or CHEAP, CHEAP)
        return forecast(self, context, **options)

    def capped_watch(folder, out, **options):
        asked.append(dict(options))
        values = dict(options.get("values") or {})
        for key in ("sample.samples", "sample.steps"):
            values[key] = min(values.get(key) or CHEAP, CHEAP)
        return run_watch(folder, out, **{**options, "values": values})

    patch.setattr(Model, "forecast", capped_forecast)
    patch.setattr(watch_run, "run_watch", capped_watch)
    return asked


@pytest.fixture
def asked(monkeypatch, tmp_path):
    """Cheap forecasts (the options asked for, in order), from an empty current folder."""
    monkeypatch.chdir(tmp_path)
    return _cap_forecasts(monkeypatch)


@pytest.fixture(scope="module")
def sampled(tmp_path_factory, repo_root):
    """A folder holding forecast/: `prediff sample` of examples/radar.h5 with the demo model (2 members, 2 steps)."""
    folder = tmp_path_factory.mktemp("sampled")
    result = CliRunner().invoke(app, ["sample", "--input", str(repo_root / "examples" / "radar.h5"), "--samples",
                                      str(CHEAP), "--steps", str(CHEAP), "--out", str(folder / "forecast")])
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="module")
def large_domain(tmp_path_factory, repo_root):
    """docs/large-domains.md's forecast of a 192 x 128 domain (2 windows): (its namespace, the options asked)."""
    frames = event_frames(repo_root / "examples" / "radar.h5", 7) / 255.0
    frames = np.concatenate([frames, frames[:, :64]], axis=1).astype(np.float32)  # (7, 192, 128) on 0-1
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("large"))
        asked = _cap_forecasts(patch)
        namespace, _ = _run(repo_root, *LARGE_DOMAIN, frames=frames, when=REFERENCE)
    return namespace, asked


def test_every_python_block_compiles_and_has_a_case(repo_root):
    """Each python block of the README and docs/ is valid Python and is run by one test of this file (a block
    added, removed or moved needs its case here)."""
    found = python_blocks(repo_root)
    for (document, index), source in found.items():
        compile(source, f"{document} (python block {index})", "exec")
    missing, stale = sorted(set(found) - set(CASES)), sorted(set(CASES) - set(found))
    assert not missing and not stale, f"python blocks without a test: {missing}; cases without a block: {stale}"


@runs(("README.md", 0), ("docs/formats.md", 0))
def test_exceedance_probability_at_30_minutes(document, index, sampled, repo_root, monkeypatch):
    """The probability of VIL >= 74 at T+30 min, read from the forecast `prediff sample` wrote."""
    monkeypatch.chdir(sampled)
    namespace, _ = _run(repo_root, document, index)
    with namespace["ds"]:
        p30 = namespace["p30"]
        assert p30.dims == ("y", "x") and p30.shape == (128, 128)
        assert float(p30.min()) >= 0.0 and float(p30.max()) <= 1.0


@runs(("README.md", 1), ("docs/api.md", 0))
def test_python_api_forecasts_writes_and_scores(document, index, asked, repo_root):
    Path("examples").mkdir()
    shutil.copy(repo_root / "examples" / "radar.h5", "examples/radar.h5")
    namespace, printed = _run(repo_root, document, index)
    assert [a["align"] for a in asked] == ["avg_x"]
    fc, scores = namespace["fc"], namespace["scores"]
    assert fc["vil"].dims == ("member", "time", "y", "x") and fc["vil"].shape == (CHEAP, 6, 128, 128)
    assert 0 <= scores["csi"]["avg"] <= 1 and set(scores["baselines"]) == {"persistence", "optical_flow", "steps"}
    written = sorted(p.name for p in Path().glob("*.nc"))
    assert written == (["api_forecast.nc"] if document == "README.md" else ["forecast.nc"])
    if document == "README.md":  # what the comment after the first print says it prints
        assert printed.splitlines()[0] == _comment_of_print(repo_root, document, index)
        assert all(0 <= float(v) <= 1 for v in printed.splitlines()[1].split())


@runs(("docs/grids.md", 0))
def test_grids_python_reads_a_map_grid_and_forecasts_on_it(document, index, asked, repo_root):
    from prediff.io.grid import grid_from_spec

    grid = grid_from_spec("center=52,5 pixel=2000", 128, 128)  # 256 km: in the middle of the model's 384 km
    radar_netcdf(Path("composite.nc"), repo_root / "examples" / "radar.h5", "vil", grid=grid)
    namespace, _ = _run(repo_root, document, index)
    radar, fc = namespace["radar"], namespace["fc"]
    assert radar.placement.input_grid.same_as(grid)
    assert radar.placement.coverage == pytest.approx((256 / 384) ** 2, abs=0.02)  # the share of the model's grid
    assert namespace["lat"].shape == namespace["lon"].shape == radar.grid.shape == (128, 128)
    assert asked == [{"output_grid": "input"}]
    np.testing.assert_allclose(fc["x"].values, grid.x)  # written back on the composite's own 2 km grid
    assert fc["vil"].shape == (CHEAP, 6, 128, 128)


@runs(("docs/inputs.md", 0))
def test_inputs_python_forecasts_a_file_an_xarray_variable_and_an_array(document, index, asked, repo_root):
    import xarray as xr

    radar_netcdf(Path("radar.nc"), repo_root / "examples" / "radar.h5", "VIL")
    with xr.open_dataset("radar.nc") as ds:
        frames = ds["VIL"].values[:7]  # kg m-2, oldest first
    namespace, _ = _run(repo_root, document, index, frames=frames, last_frame_utc=REFERENCE)
    assert [set(a) for a in asked] == [{"samples"}, set(), {"scale", "reference_time"}]
    fc = namespace["fc"]  # the array's: its times from last_frame_utc
    assert fc["vil"].shape == (CHEAP, 6, 128, 128)
    assert fc["forecast_reference_time"].values == np.datetime64(REFERENCE)
    assert namespace["radar"].context.shape == (7, 128, 128) and namespace["radar"].truth.shape == (6, 128, 128)


@runs(LARGE_DOMAIN)
def test_large_domain_forecast_from_an_array(document, index, large_domain):
    """The block runs in the fixture `large_domain`, whose forecast the seam statistic's block reads."""
    namespace, asked = large_domain
    assert asked == [{"scale": "0-1", "reference_time": REFERENCE, "samples": 8, "tile_overlap": 32}]
    fc = namespace["fc"]
    assert fc["vil"].shape == (CHEAP, 6, 192, 128) and np.isfinite(fc["vil"].values).all()
    assert fc.attrs["tile_windows"] == "2 x 1" and fc.attrs["tile_overlap_px"] == 32


@runs(("docs/large-domains.md", 1))
def test_tile_layout_prints_what_the_comment_says(document, index, repo_root):
    _, printed = _run(repo_root, document, index)
    assert printed.startswith(_comment_of_print(repo_root, document, index))


@runs(("docs/large-domains.md", 2))
def test_seam_statistic_of_a_forecast_file(document, index, large_domain, repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("forecast").mkdir()
    large_domain[0]["fc"].to_netcdf("forecast/forecast.nc")
    namespace, printed = _run(repo_root, document, index)
    with namespace["fc"]:
        assert re.fullmatch(r"2 windows \(2 x 1\) of 128 x 128 pixels, overlapping by at least 32 pixels: "
                            r"edge / beside \d+\.\d\d on average, \d+\.\d\d at most\n", printed), printed
        assert np.isfinite(namespace["ratio"]).all() and namespace["ratio"].size > 0


@runs(("docs/scoring.md", 0))
def test_two_evaluations_compare_with_the_paired_bootstrap(document, index, synthetic_root, repo_root, tmp_path,
                                                           monkeypatch):
    """`prediff score` of the same 4 cases (2 events) with two solvers, as the text before the block says."""
    monkeypatch.chdir(tmp_path)
    for sampler in ("dpmpp", "ddim"):
        result = CliRunner().invoke(app, ["score", "--data", str(synthetic_root), "--split", "test", "--limit", "4",
                                          "--sampler", sampler, "--samples", str(CHEAP), "--steps", str(CHEAP),
                                          "--baselines", "none", "--out", f"scores-{sampler}"])
        assert result.exit_code == 0, result.output
    _, printed = _run(repo_root, document, index)
    assert re.match(r"\{'value': .*'interval': \[.*\], 'excludes_zero': (True|False)\}$", printed.strip()), printed


def _frame_files(folder: Path, frames: np.ndarray) -> None:
    """One HDF5 file per frame (digital VIL, `time_utc`), 10 minutes apart ending at REFERENCE, as radar sends."""
    folder.mkdir()
    for k, frame in enumerate(frames):
        when = REFERENCE - dt.timedelta(minutes=10 * (len(frames) - 1 - k))
        with h5py.File(folder / f"radar_{when:%Y%m%d%H%M}.h5", "w") as h5:
            h5["vil"] = frame[None].astype(np.uint8)
            h5["vil"].attrs["time_utc"] = f"{when:%Y-%m-%dT%H:%M:%SZ}"


@runs(("docs/watch.md", 0))
def test_watch_from_python_forecasts_the_newest_context_once(document, index, asked, repo_root):
    _frame_files(Path("radar"), event_frames(repo_root / "examples" / "radar.h5", 7))
    namespace, _ = _run(repo_root, document, index)
    assert asked == [{"once": True, "values": {"sample.samples": 8}}]
    summary = namespace["summary"]
    assert summary["skipped"] == [] and summary["failed"] == [] and len(summary["cycles"]) == 1
    assert summary["cycles"][0]["members"] == CHEAP
    assert os.path.isfile("nowcasts/latest/forecast.nc")
