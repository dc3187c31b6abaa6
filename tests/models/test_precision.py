"""`--precision auto|fp32|bf16` (`sample.precision`): parsing, resolution on this machine, the refusal of bf16 where
the CPU lacks it, and the record of what ran in the forecast's attributes and run.json. The bf16 forecasts here run
the bf16 path with its emulated dot product (`PREDIFF_BF16_EMULATE=1`), so they run on any CPU."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import prediff
from prediff.cli.app import app
from prediff.config import load_config
from prediff.config.forecast_settings import sample_values
from prediff.errors import ConfigError
from prediff.io.netcdf import read_forecast
from prediff_models.kernels import library_path
from prediff_models.kernels import precision as P


def test_precision_option_and_config_value():
    assert load_config("demo").sample.precision == "auto"
    assert load_config("demo", ["sample.precision=bf16"]).sample.precision == "bf16"
    with pytest.raises(ConfigError, match="sample.precision"):
        load_config("demo", ["sample.precision=fp16"])
    assert sample_values(precision="fp32") == {"sample.precision": "fp32"}
    assert "sample.precision" not in sample_values()
    result = CliRunner().invoke(app, ["sample", "--help"], terminal_width=200)
    assert "--precision" in result.output and "bf16" in result.output
    bad = CliRunner().invoke(app, ["sample", "--input", "x.h5", "--precision", "fp16"])
    assert bad.exit_code == 2 and "fp16" in bad.output


@pytest.mark.skipif(P.cpu_has_bf16(), reason="this CPU has AVX512_BF16 (the test is for CPUs without it)")
def test_bf16_is_refused_in_one_line_where_the_cpu_lacks_it(tmp_path, repo_root, monkeypatch):
    monkeypatch.delenv(P.EMULATE_ENV, raising=False)
    out = tmp_path / "fc"
    result = CliRunner().invoke(app, ["sample", "--input", str(repo_root / "examples" / "radar.h5"), "--out", str(out),
                                      "--precision", "bf16"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "AVX512_BF16" in lines[0] and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture(scope="module")
def demo(repo_root):
    return prediff.load_model("demo"), prediff.read_radar(repo_root / "examples" / "radar.h5")


@pytest.mark.compiled
@pytest.mark.skipif(library_path() is None, reason="the fused CPU kernels are not built here")
def test_forecasts_record_the_precision_that_ran(demo, monkeypatch):
    """Same seed, same settings: the fp32 and the bf16 forecast differ (the bf16 path did run inside the compiled
    graphs) but only by bf16's rounding; each records its precision. `auto` resolves as `bf16_support()` says."""
    model, radar = demo
    settings = dict(samples=2, sampler="dpmpp", steps=2, eta=1.0, align="none", seed=3)
    monkeypatch.delenv(P.EMULATE_ENV, raising=False)
    fp32 = model.forecast(radar, precision="fp32", **settings)
    assert fp32.attrs["precision"] == "fp32" and fp32.attrs["requested_precision"] == "fp32"
    auto = model.forecast(radar, precision="auto", **settings)
    assert auto.attrs["precision"] == ("bf16" if P.bf16_support().available else "fp32")
    monkeypatch.setenv(P.EMULATE_ENV, "1")
    bf16 = model.forecast(radar, precision="bf16", **settings)
    assert bf16.attrs["precision"] == "bf16" and bf16.attrs["requested_precision"] == "bf16"
    a, b = (np.asarray(ds["vil"].values, np.float64) for ds in (fp32, bf16))
    difference = np.abs(a - b)
    assert difference.max() > 0.5  # digital VIL: bf16 did change the numbers ...
    assert np.sqrt(np.mean(difference ** 2)) < 0.03 * np.sqrt(np.mean(a ** 2))  # ... a little
    again = model.forecast(radar, precision="fp32", **settings)  # and fp32 again is fp32, exactly
    np.testing.assert_array_equal(np.asarray(again["vil"].values), np.asarray(fp32["vil"].values))


@pytest.mark.skipif(library_path() is None, reason="the fused CPU kernels are not built here")
def test_sample_writes_the_precision_into_run_json(tmp_path, repo_root, monkeypatch):
    monkeypatch.setenv(P.EMULATE_ENV, "1")
    out = tmp_path / "fc"
    result = CliRunner().invoke(app, ["sample", "--input", str(repo_root / "examples" / "radar.h5"), "--out", str(out),
                                      "--samples", "1", "--steps", "1", "--precision", "bf16", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["precision"] == "bf16"
    assert read_forecast(out / "forecast.nc").attrs["precision"] == "bf16"
