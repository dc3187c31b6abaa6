"""Hostile input to every command: one line on stderr, a non-zero exit, nothing partial written, no traceback.

(The `.pt` reader, the downloads and the training runs have their own files: test_state_dict_file.py,
test_download.py, test_training_safety.py.)
"""
import datetime as dt

import h5py
import netCDF4
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from prediff.cli.app import app
from prediff.cli.reporting import fail, guarded
from prediff.errors import InputError
from prediff.io.checkpoint import Checkpoint, weights_sha256
from prediff.io.netcdf import read_forecast, write_forecast


def _invoke(*args):
    return CliRunner().invoke(app, list(args))


def _one_error_line(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# ------------------------------------------------------------------------------------------------------------------
# messages: user data printed verbatim


@pytest.mark.parametrize("name", ["[red]x.h5", "[/red]x.h5", "prediff[convert].h5", "a [b] c.h5"])
def test_paths_with_brackets_print_verbatim(tmp_path, name):
    result = _invoke("sample", "--input", str(tmp_path / name), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert str(tmp_path / name) in _one_error_line(result)


def test_fail_prints_markup_like_text_verbatim(capsys):
    fail("cannot open [/red] and [bold]prediff[convert]")
    assert "error: cannot open [/red] and [bold]prediff[convert]" in capsys.readouterr().err


def test_guard_turns_every_error_into_one_line(tmp_path, monkeypatch):
    @guarded(oom_hint="try fewer --samples")
    def oom():
        raise MemoryError

    @guarded
    def oom_plain():
        raise MemoryError

    @guarded
    def bug():
        raise RuntimeError("boom [/red]\nsecond line")

    for func, code, text in ((oom, 1, "out of memory; try fewer --samples"), (oom_plain, 1, "out of memory"),
                             (bug, 3, "internal error (RuntimeError: boom [/red] second line)")):
        with pytest.raises(typer.Exit) as exit_info:
            func()
        assert exit_info.value.exit_code == code
    monkeypatch.setenv("PREDIFF_DEBUG", "1")
    with pytest.raises(RuntimeError):
        bug()


def test_convert_weights_out_of_memory_hint_does_not_mention_samples(tmp_path, monkeypatch):
    import prediff.pipelines.convert_weights as cw

    def exhausted(*_args, **_kwargs):
        raise MemoryError

    monkeypatch.setattr(cw, "convert_weights", exhausted)
    src = tmp_path / "w.pt"
    src.write_bytes(b"x")
    result = _invoke("convert-weights", str(src), "--component", "vae", "--out", str(tmp_path / "o.ckpt"))
    line = _one_error_line(result)
    assert result.exit_code == 1 and "out of memory" in line and "--samples" not in line


# ------------------------------------------------------------------------------------------------------------------
# outputs: checked before any work, never silently replaced


def test_sample_out_that_is_a_file_fails_before_any_work(tmp_path, radar_file):
    target = tmp_path / "forecast"
    target.write_text("mine")
    result = _invoke("sample", "--input", str(radar_file), "--out", str(target), "--vae", str(tmp_path / "none"))
    assert result.exit_code == 2 and "is a file, not a folder" in _one_error_line(result)
    assert target.read_text() == "mine"


def test_score_out_that_is_a_file_fails_before_any_work(tmp_path, radar_file):
    target = tmp_path / "scores"
    target.write_text("mine")
    result = _invoke("score", "--forecast", str(tmp_path / "none.nc"), "--truth", str(radar_file),
                     "--out", str(target))
    assert result.exit_code == 2 and "is a file, not a folder" in _one_error_line(result)


def test_score_refuses_to_replace_earlier_scores(tmp_path, radar_file):
    out = tmp_path / "scores"
    out.mkdir()
    (out / "scores.json").write_text("{}")
    result = _invoke("score", "--forecast", str(tmp_path / "none.nc"), "--truth", str(radar_file), "--out", str(out))
    assert result.exit_code == 2 and "--overwrite" in _one_error_line(result)
    assert (out / "scores.json").read_text() == "{}"


# ------------------------------------------------------------------------------------------------------------------
# a UNet (or alignment network) with a VAE it was not trained on


def _vae(value: float) -> Checkpoint:
    return Checkpoint(component="vae", model_kwargs={}, model={"w": np.full((2, 3), value, np.float32)})


def test_vae_pairing_is_checked_by_weights():
    from prediff.pipelines.model import check_vae_pairing

    trained_on = _vae(1.0)
    record = {"path": "runs/vae/last.ckpt", "sha256": "f" * 64, "weights_sha256": weights_sha256(trained_on.model)}
    unet = Checkpoint(component="unet", model_kwargs={}, model={}, meta={"vae_checkpoint": record})
    check_vae_pairing(_vae(1.0), "exported.ckpt", "0" * 64, unet, "u.ckpt", "--unet")  # same weights, other file
    check_vae_pairing(_vae(2.0), "other.ckpt", "f" * 64, unet, "u.ckpt", "--unet")  # the recorded file itself
    with pytest.raises(InputError, match="trained with another VAE .*--allow-mismatch"):
        check_vae_pairing(_vae(2.0), "other.ckpt", "0" * 64, unet, "u.ckpt", "--unet")
    unrecorded = Checkpoint(component="unet", model_kwargs={}, model={})
    check_vae_pairing(_vae(2.0), "other.ckpt", "0" * 64, unrecorded, "u.ckpt", "--unet")


def test_weights_digest_depends_on_names_shapes_and_values():
    base = {"a": np.zeros((2, 3), np.float32), "b": np.ones(4, np.float32)}
    assert weights_sha256(base) == weights_sha256(dict(reversed(list(base.items()))))
    for changed in ({"a": np.zeros((3, 2), np.float32), "b": base["b"]}, {"a": base["a"], "c": base["b"]},
                    {"a": base["a"], "b": base["b"] * 2}, {"a": base["a"].astype(np.float64), "b": base["b"]}):
        assert weights_sha256(changed) != weights_sha256(base)


# ------------------------------------------------------------------------------------------------------------------
# config values: one range check per numeric field


@pytest.mark.parametrize("override, message", [
    ("sample.member_batch=-1", "'sample.member_batch': -1 is not valid; expected an integer >= 0"),
    ("vae.latent_channels=0", "'vae.latent_channels': 0 is not valid; expected an integer >= 1"),
    ("seed=-1", "'seed': -1 is not valid; expected an integer 0 <= value <= 4294967295"),
    ("unet.attn_drop=1.0", "'unet.attn_drop': 1.0 is not valid; expected a number 0 <= value < 1"),
    ("score.thresholds=[16,300]", "'score.thresholds[1]': 300.0 is not valid"),
    ("sample.eta=.nan", "'sample.eta': nan is not valid"),
    ("vae.norm_num_groups=3", "does not divide the block channels"),
])
def test_numeric_config_values_are_range_checked(tmp_path, radar_file, override, message):
    result = _invoke("score", "--forecast", str(tmp_path / "f.nc"), "--truth", str(radar_file), "--out",
                     str(tmp_path / "o"), "--set", override)
    assert result.exit_code == 2 and message in _one_error_line(result)
    assert not (tmp_path / "o").exists()


def test_every_numeric_config_field_has_a_range():
    import dataclasses
    import typing

    from prediff.config import schema

    for cls in (schema.DataConfig, schema.VAEConfig, schema.UNetConfig, schema.AlignConfig, schema.DiffusionConfig,
                schema.TrainConfig, schema.SampleConfig, schema.ScoreConfig, schema.Config):
        hints = typing.get_type_hints(cls)
        numeric = [f.name for f in dataclasses.fields(cls) if "int" in str(hints[f.name]) or
                   "float" in str(hints[f.name])]
        assert set(numeric) <= set(schema.LIMITS[cls]), (cls.__name__, set(numeric) - set(schema.LIMITS[cls]))


# ------------------------------------------------------------------------------------------------------------------
# forecast files that prediff did not write


def _nc(path, *, time_units="minutes since 2019-07-01 18:00:00", with_time=True, reference=True):
    with netCDF4.Dataset(path, "w") as ds:
        for name, n in (("member", 2), ("time", 6), ("y", 128), ("x", 128)):
            ds.createDimension(name, n)
        ds.createVariable("vil", "f4", ("member", "time", "y", "x"))[:] = np.zeros((2, 6, 128, 128), np.float32)
        if with_time:
            time = ds.createVariable("time", "f8", ("time",))
            if time_units is not None:
                time.units = time_units
            time[:] = np.arange(1, 7) * (1 / 6 if time_units.startswith("hours") else 10.0) \
                if time_units else np.arange(6)
        if reference and time_units:
            ref = ds.createVariable("forecast_reference_time", "f8", ())
            ref.units = time_units
            ref.assignValue(0.0)
    return path


def test_forecast_time_is_decoded_with_cf_rules(tmp_path):
    fc = read_forecast(_nc(tmp_path / "h.nc", time_units="hours since 2019-07-01 18:00:00Z"))
    assert fc.reference_time == dt.datetime(2019, 7, 1, 18)
    np.testing.assert_allclose(fc.lead_minutes, np.arange(10, 70, 10), atol=1e-6)
    assert fc.times[0] == dt.datetime(2019, 7, 1, 18, 10)
    # without forecast_reference_time: the reference is one 10-minute step before the first valid time
    bare = read_forecast(_nc(tmp_path / "b.nc", time_units="hours since 2019-07-01 17:00:00Z", reference=False))
    assert bare.reference_time == dt.datetime(2019, 7, 1, 17)
    np.testing.assert_allclose(bare.lead_minutes, np.arange(10, 70, 10), atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(with_time=False), "has no 'time' variable"),
    (dict(time_units=None, reference=False), "has no CF time units"),
    (dict(time_units="minutes since yesterday"), "cannot decode 'time'"),
])
def test_forecast_without_usable_times_gives_one_line(tmp_path, radar_file, kwargs, message):
    nc = _nc(tmp_path / "bad.nc", **kwargs)
    with pytest.raises(InputError, match=message):
        read_forecast(nc)
    result = _invoke("score", "--forecast", str(nc), "--truth", str(radar_file), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and message in _one_error_line(result)
    assert not (tmp_path / "o" / "scores.json").exists()


def test_forecast_declaring_huge_dimensions_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.nc"
    with netCDF4.Dataset(path, "w") as ds:
        for name, n in (("member", 1), ("time", 6), ("y", 100_000), ("x", 100_000)):
            ds.createDimension(name, n)
        ds.createVariable("vil", "f4", ("member", "time", "y", "x"), zlib=True, chunksizes=(1, 1, 64, 64))
    with pytest.raises(InputError, match="dimension 'y' of 'vil' has length 100000"):
        read_forecast(path)


def test_forecast_with_malformed_grid_gives_one_line(tmp_path):
    path = write_forecast(tmp_path / "g.nc", np.zeros((1, 6, 8, 8), np.float32),
                          reference_time=dt.datetime(2019, 7, 1), lead_minutes=range(10, 70, 10))
    with netCDF4.Dataset(path, "a") as ds:
        ds.createVariable("lambert_azimuthal_equal_area", "i4", ())
        ds.createVariable("lat", "f4", ("y", "x"))
    with pytest.raises(InputError, match="map grid .* is malformed"):
        read_forecast(path)


# ------------------------------------------------------------------------------------------------------------------
# radar input


def test_input_directory_is_named_as_such(tmp_path):
    folder = tmp_path / "radar.h5"
    folder.mkdir()
    result = _invoke("sample", "--input", str(folder), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "is a directory" in _one_error_line(result)


@pytest.mark.parametrize("shape", [(13, 100_000, 128), (10 ** 6, 128, 128), (1, 128, 128, 10 ** 6)])
def test_radar_file_declaring_huge_shapes_is_refused_before_reading(tmp_path, shape):
    from prediff.data.radar_input import read_radar_input

    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("vil", shape=shape, dtype="u1", chunks=(1,) * (len(shape) - 2) + (64, 64))
    with pytest.raises(InputError, match="declares"):
        read_radar_input(path)


def test_radar_reads_only_the_frames_it_needs_and_keeps_the_file_scale(tmp_path):
    from prediff.data.radar_input import read_radar_input

    frames = np.zeros((30, 16, 16), np.float32)
    frames[25] = 200.0  # the digital scale is told by the whole sequence, not the 13 frames read
    frames[:13] = 0.5
    path = tmp_path / "seq.h5"
    with h5py.File(path, "w") as h5:
        h5["vil"] = frames
    radar = read_radar_input(path, start=0)
    np.testing.assert_allclose(radar.context, 0.5 / 255.0)
    assert radar.truth.shape == (6, 16, 16)


@pytest.mark.parametrize("args, message", [
    (["sample", "--input", "x.h5", "--sampler", "foo"], "Invalid value for '--sampler'"),
    (["sample"], "Missing option '--input'"),
    (["nonexistent"], "No such command 'nonexistent'"),
])
def test_usage_errors_are_one_line_from_the_console_command(args, message):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "prediff", *args], capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
        proc.stderr
