"""`prediff watch`: frames dropped one by one into a folder, forecasts made only for a complete context, cycle folders
with a `latest` link, pruning, bad and partial files, restarts, interrupts and the latency log.

The forecasts use the bundled demo model with 1 member and 2 solver steps, loaded once for the module: its graphs
are compiled by the first cycle and reused by every later one (as a long-running watch does).
"""
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from prediff.data.frame_arrivals import FrameArrivals
from prediff.errors import InputError
from prediff.io import cycle_folders
from prediff.io.cycle_folders import exclusive, point_latest, prune, remove_leftovers
from prediff.io.json_lines import read_json_lines

START = dt.datetime(2019, 7, 1, 18, 0)
FAST = {"sample.samples": 1, "sample.steps": 2, "sample.align": "none"}
FORECAST_FIELDS = {"cycle", "valid_time", "newest_frame_file", "frame_mtime", "last_arrival", "detected", "written",
                   "latency_from_valid_time_s", "latency_from_arrival_s", "forecast_wall_s", "sampling_s", "warm",
                   "members", "sampler", "network_evaluations", "files", "latest", "pruned", "time", "event"}


def _frame(k: int, size: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return 180 * np.exp(-((yy - 30 - 2 * k) ** 2 + (xx - 25 - 2 * k) ** 2) / 60.0)


def _drop(folder: Path, k: int, minutes: int = 10, name: str = None) -> Path:
    """Frame k (valid START + k*minutes) as a one-frame HDF5 file, written under a hidden name then renamed in, as
    a careful sender does."""
    when = START + dt.timedelta(minutes=minutes * k)
    path = folder / (name or f"radar_{when:%Y%m%d%H%M}.h5")
    tmp = folder / f".{path.name}.part"
    with h5py.File(tmp, "w") as h5:
        h5["vil"] = _frame(k)[None].astype(np.uint8)
        h5["vil"].attrs["time_utc"] = f"{when:%Y-%m-%dT%H:%M:%SZ}"
    os.replace(tmp, path)
    return path


def _age(path: Path, seconds: float = 3600) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _log(out: Path):
    return list(read_json_lines(out / "watch.log.jsonl"))


def _cycles(out: Path):
    return sorted(p.name for p in out.iterdir() if cycle_folders.cycle_time(p.name) is not None)


def _wait_for(condition, timeout: float = 600.0, what: str = "the watch"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def demo():
    from prediff.pipelines.model import load_model

    return load_model("demo")


# --------------------------------------------------------------------------------------------- the folder, no model


def test_a_context_is_complete_only_with_every_frame_and_5_minute_data_is_thinned(tmp_path):
    arrivals = FrameArrivals(tmp_path, settle=0.0)
    for k in range(12):  # 5-minute frames: a context of 7 frames 10 minutes apart needs 13 of them
        _drop(tmp_path, k, minutes=5)
        arrivals.scan()
        assert arrivals.context(7) is None
    _drop(tmp_path, 12, minutes=5)
    arrivals.scan()
    context = arrivals.context(7)
    assert context.times == [START + dt.timedelta(minutes=10 * j) for j in range(7)]
    assert [p.name for p in context.files] == [f"radar_{t:%Y%m%d%H%M}.h5" for t in context.times]
    _drop(tmp_path, 13, minutes=5)  # 19:05: a new context, every 2nd frame counting back from it
    arrivals.scan()
    assert arrivals.context(7).times[-1] == START + dt.timedelta(minutes=65)


def test_a_file_being_written_is_waited_for_and_a_bad_file_is_refused_once(tmp_path):
    good = _drop(tmp_path, 0)
    partial = tmp_path / "radar_201907011810.h5"
    partial.write_bytes(good.read_bytes()[:700])  # a transfer in progress: does not read yet
    arrivals = FrameArrivals(tmp_path, settle=30.0)
    scan = arrivals.scan()
    assert scan.pending == [partial] and scan.refused == []
    partial.unlink()
    _drop(tmp_path, 1)  # ... and then it is complete: read at once
    scan = arrivals.scan()
    assert scan.pending == [] and sorted(arrivals.frames) == [START, START + dt.timedelta(minutes=10)]

    crafted = tmp_path / "radar_201907011820.h5"
    crafted.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\xff" * 400)  # an HDF5 signature and nonsense
    _age(crafted)  # not changing, not recent: refused, with the reason
    scan = arrivals.scan()
    assert [p for p, _ in scan.refused] == [crafted] and str(crafted) in scan.refused[0][1]
    assert arrivals.scan().refused == []  # told once, not read again
    again = FrameArrivals(tmp_path, settle=30.0, refused=arrivals.refused)  # a restart keeps the refusal
    assert again.scan().refused == []
    crafted.unlink()
    _drop(tmp_path, 2, name=crafted.name)  # replaced by a good file: read
    assert again.scan().refused == [] and len(again.frames) == 3


def test_two_files_for_one_time_the_first_arrival_is_used(tmp_path):
    first = _drop(tmp_path, 0, name="a.h5")
    _age(first, 60)
    second = _drop(tmp_path, 0, name="b.h5")
    arrivals = FrameArrivals(tmp_path)
    scan = arrivals.scan()
    assert [p for p, _ in scan.refused] == [second]
    assert "b.h5 holds the frame of 2019-07-01 18:00:00, which a.h5 holds already" in scan.refused[0][1]
    assert arrivals.frames == {START: first}


def test_cycle_folders_latest_link_pruning_and_leftovers(tmp_path, monkeypatch):
    for minute in (0, 10, 20):
        folder = tmp_path / f"20190701T18{minute:02d}Z"
        folder.mkdir()
        (folder / "run.json").write_text("{}")
    (tmp_path / "20190701T1830Z").mkdir()  # no run.json: not a complete cycle, never counted nor pruned
    assert point_latest(tmp_path, "20190701T1820Z", START) == "link"
    assert os.readlink(tmp_path / "latest") == "20190701T1820Z"
    assert prune(tmp_path, 2) == ["20190701T1800Z"]
    assert [n for _, n in cycle_folders.done_cycles(tmp_path)] == ["20190701T1810Z", "20190701T1820Z"]
    assert (tmp_path / "20190701T1830Z").is_dir() and prune(tmp_path, 0) == []
    (tmp_path / f".20190701T1840Z.{os.getpid()}.tmp").mkdir()
    (tmp_path / ".pruned-20190701T1750Z").mkdir()
    assert sorted(remove_leftovers(tmp_path)) == [".20190701T1840Z.%d.tmp" % os.getpid(), ".pruned-20190701T1750Z"]

    def no_links(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(cycle_folders.os, "symlink", no_links)
    assert point_latest(tmp_path, "20190701T1820Z", START + dt.timedelta(minutes=20)) == "json"
    pointer = json.loads((tmp_path / "latest.json").read_text())
    assert pointer["folder"] == "20190701T1820Z" and pointer["reference_time"] == "2019-07-01T18:20:00Z"


def test_the_output_folder_must_be_new_or_a_watch_folder_and_one_watch_at_a_time(tmp_path):
    from prediff.pipelines.watch_run import run_watch

    radar = tmp_path / "radar"
    radar.mkdir()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("a user's file")
    with pytest.raises(InputError, match="holds other files"):
        run_watch(radar, busy, once=True, model="no-such-model")
    with pytest.raises(InputError, match="does not exist"):
        run_watch(tmp_path / "nowhere", tmp_path / "out", once=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / "watch.log.jsonl").write_text("")
    (out / "latest").mkdir()
    with pytest.raises(InputError, match="is not a link"):
        run_watch(radar, out, once=True)
    (out / "latest").rmdir()
    with exclusive(out):
        with pytest.raises(InputError, match="in use by another `prediff watch`"):
            run_watch(radar, out, once=True)
    assert (busy / "mine.txt").read_text() == "a user's file"


# ------------------------------------------------------------------------------------------------ with the demo model


def test_a_model_reuses_its_compiled_forecaster_while_the_settings_stay_the_same():
    import dataclasses

    from prediff.pipelines.forecast import model_forecaster
    from prediff.pipelines.model import load_model

    demo = load_model("demo")  # its own: the forecasters made here are never run
    assert demo.forecaster_cache is None
    settings = dataclasses.replace(demo.config.sample, samples=1, steps=2)
    first = model_forecaster(demo, settings)
    assert model_forecaster(demo, dataclasses.replace(settings)) is first  # equal settings: the same graphs
    other = model_forecaster(demo, dataclasses.replace(settings, steps=3))
    assert other is not first and model_forecaster(demo, settings) is not first  # only the last settings kept


def test_a_reused_forecaster_carries_nothing_from_one_forecast_to_the_next(demo):
    from prediff.config.forecast_settings import forecast_config
    from prediff.pipelines.forecast import run_forecast

    settings = forecast_config(demo.config, None, [], FAST)
    one = np.stack([_frame(k) for k in range(7)]).astype(np.float32) / 255
    other = np.stack([_frame(k + 5) for k in range(7)]).astype(np.float32) / 255
    first = run_forecast(demo, settings, one, None).members
    run_forecast(demo, settings, other, None)
    again = run_forecast(demo, settings, one, None)
    np.testing.assert_array_equal(again.members, first)


def test_frames_dropped_one_by_one_make_a_forecast_per_complete_context(tmp_path, demo):
    from prediff.pipelines.watch_run import run_watch

    radar, out = tmp_path / "radar", tmp_path / "nowcasts"
    radar.mkdir()
    for k in range(6):
        _drop(radar, k)
    lines, stop = [], threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: result.update(run_watch(
        radar, out, keep=1, poll=0.05, settle=0.5, model=demo, values=FAST, notify=lines.append, stop=stop)))
    thread.start()
    try:
        _wait_for(lambda: any(line.startswith("watching") for line in lines))
        time.sleep(0.5)  # ten looks at a folder holding 6 of the 7 frames: nothing is forecast
        assert _cycles(out) == [] and not (out / "latest").exists()
        _drop(radar, 6)
        _wait_for(lambda: _cycles(out) == ["20190701T1900Z"] and (out / "latest").is_symlink(), what="the first cycle")
        assert os.readlink(out / "latest") == "20190701T1900Z"
        bad, tmp = radar / "radar_201907011905.h5", radar / ".radar_201907011905.h5.part"
        tmp.write_bytes(b"not radar at all")
        _age(tmp)
        os.replace(tmp, bad)  # it arrives old and complete: refused at the first look
        _drop(radar, 7)
        _wait_for(lambda: _cycles(out) == ["20190701T1910Z"], what="the second cycle")  # --keep 1 pruned the first
        assert os.readlink(out / "latest") == "20190701T1910Z"
        time.sleep(0.3)  # more looks: nothing new, nothing forecast again, the bad file not told again
    finally:
        stop.set()
        thread.join(120)
    assert not thread.is_alive() and result["stopped"] is True
    assert [c["cycle"] for c in result["cycles"]] == ["20190701T1900Z", "20190701T1910Z"]

    ds = xr.open_dataset(out / "latest" / "forecast.nc")
    assert ds["forecast_reference_time"].values == np.datetime64("2019-07-01T19:10")
    np.testing.assert_allclose(ds["vil_context"].values, np.stack([_frame(k).astype(np.uint8) for k in range(1, 8)]),
                               atol=1e-3)
    assert ds.attrs["input_file"] == "radar" and "prediff watch" in ds.attrs["history"]
    run = json.loads((out / "latest" / "run.json").read_text())
    assert run["netcdf"] == str(out / "20190701T1910Z" / "forecast.nc")  # the final place, not the temporary one
    assert sorted(p.name for p in (out / "latest").iterdir()) == ["config.yaml", "forecast.gif", "forecast.nc",
                                                                   "forecast.png", "run.json"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".pruned")]

    records = _log(out)
    assert [r["event"] for r in records] == ["start", "forecast", "skipped", "forecast", "stop"]
    assert records[-1]["reason"] == "stopped"
    first, skipped, second = records[1], records[2], records[3]
    assert skipped["file"] == bad.name and bad.name in skipped["reason"]
    for record in (first, second):
        assert FORECAST_FIELDS <= set(record)
        assert record["valid_time"] == f"{cycle_folders.cycle_time(record['cycle']):%Y-%m-%dT%H:%M:%S}Z"
        assert 0 <= record["latency_from_arrival_s"] < 600 and record["forecast_wall_s"] > record["sampling_s"] > 0
        assert record["latency_from_valid_time_s"] > 3600 * 24 * 365  # the frames are from 2019
        assert record["members"] == 1 and record["network_evaluations"] == 2 and record["latest"] == "link"
        for key in ("detected", "written", "last_arrival", "frame_mtime"):
            dt.datetime.strptime(record[key], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert second["newest_frame_file"] == "radar_201907011910.h5" and second["pruned"] == ["20190701T1900Z"]
    assert second["warm"] is True  # the second cycle reused the compiled networks
    assert any("skipped radar_201907011905.h5" in line for line in lines)
    assert sum("model demo" in line for line in lines) == 1  # the model is named once, not every cycle


def test_once_resumes_without_redoing_a_cycle_and_an_interrupt_leaves_no_partial_cycle(tmp_path, demo, monkeypatch):
    from prediff.pipelines import sample_run, watch_run

    radar, out = tmp_path / "radar", tmp_path / "nowcasts"
    radar.mkdir()
    for k in range(7):
        _drop(radar, k)
    real_png = sample_run.write_summary_png

    def interrupted(*args, **kwargs):  # Ctrl-C while the products are written: NetCDF and GIF are there already
        assert any(p.name.endswith(".tmp") for p in out.iterdir())
        raise KeyboardInterrupt

    monkeypatch.setattr(sample_run, "write_summary_png", interrupted)
    result = watch_run.run_watch(radar, out, once=True, model=demo, values=FAST)
    assert result["stopped"] is True and result["cycles"] == []
    assert sorted(p.name for p in out.iterdir()) == [".watch.lock", "watch.log.jsonl"]
    assert _log(out)[-1]["event"] == "stop" and _log(out)[-1]["reason"] == "interrupted"

    monkeypatch.setattr(sample_run, "write_summary_png", real_png)
    result = watch_run.run_watch(radar, out, once=True, model=demo, values=FAST)
    assert [c["cycle"] for c in result["cycles"]] == ["20190701T1900Z"]
    written = (out / "20190701T1900Z" / "forecast.nc").stat().st_mtime_ns

    (out / "latest").unlink()  # as if stopped between the cycle's rename and its link
    result = watch_run.run_watch(radar, out, once=True, model=demo, values=FAST)  # a restart: nothing to do
    assert result["cycles"] == [] and (out / "20190701T1900Z" / "forecast.nc").stat().st_mtime_ns == written
    assert os.readlink(out / "latest") == "20190701T1900Z"
    assert [r["event"] for r in _log(out)].count("forecast") == 1


def test_a_cycle_whose_frames_are_refused_is_logged_once_and_not_retried(tmp_path, demo):
    from prediff.pipelines.watch_run import run_watch

    radar, out = tmp_path / "radar", tmp_path / "nowcasts"
    radar.mkdir()
    for k in range(7):
        path = _drop(radar, k)
    with h5py.File(path, "r+") as h5:  # the newest frame on another grid size: the cycle cannot be forecast
        del h5["vil"]
        h5["vil"] = np.zeros((1, 64, 64), np.uint8)
        h5["vil"].attrs["time_utc"] = "2019-07-01T19:00:00Z"
    for _ in range(2):
        result = run_watch(radar, out, once=True, model=demo, values=FAST)
    assert result["failed"] == [] and result["cycles"] == []  # the second run did not try again
    failed = [r for r in _log(out) if r["event"] == "failed"]
    assert len(failed) == 1 and "64x64" in failed[0]["reason"] and failed[0]["cycle"] == "20190701T1900Z"
    assert _cycles(out) == []


def test_the_command_exits_0_on_ctrl_c_and_refuses_bad_options_in_one_line(tmp_path, monkeypatch):
    from prediff.cli.app import app
    from prediff.data import frame_arrivals

    radar = tmp_path / "radar"
    radar.mkdir()
    _drop(radar, 0)
    looks = []
    real_scan = frame_arrivals.FrameArrivals.scan

    def scan_then_ctrl_c(self, now=None):
        looks.append(now)
        if len(looks) == 3:
            raise KeyboardInterrupt
        return real_scan(self, now)

    monkeypatch.setattr(frame_arrivals.FrameArrivals, "scan", scan_then_ctrl_c)
    runner = CliRunner()
    result = runner.invoke(app, ["watch", str(radar), "--out", str(tmp_path / "out"), "--poll", "0.01"])
    assert result.exit_code == 0, result.output
    assert "stopped (interrupted)" in result.output and len(looks) == 3
    assert _log(tmp_path / "out")[-1]["reason"] == "interrupted"

    result = runner.invoke(app, ["watch", str(tmp_path / "nowhere"), "--once"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "does not exist" in result.output
    result = runner.invoke(app, ["watch", str(radar), "--overwrite"])
    assert result.exit_code == 2 and "--overwrite" in result.output


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_stops_a_running_watch_with_exit_code_0(tmp_path):
    radar, out = tmp_path / "radar", tmp_path / "out"
    radar.mkdir()
    _drop(radar, 0)
    proc = subprocess.Popen([sys.executable, "-m", "prediff", "watch", str(radar), "--out", str(out), "--poll",
                             "0.05"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: (out / "watch.log.jsonl").exists() and any(
            r["event"] == "start" for r in _log(out)) or proc.poll() is not None, timeout=300, what="the start")
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            output = proc.communicate()[0]
    assert proc.returncode == 0, output
    assert _log(out)[-1]["event"] == "stop" and _log(out)[-1]["reason"] in ("interrupted", "stopped"), output
    assert "stopped" in output
