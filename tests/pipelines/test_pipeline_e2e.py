"""The whole chain from scratch through the CLI, as a user runs it: synthetic data → train-vae → train-diffusion
→ train-align → sample → score. Marked `slow` (a few minutes); CI runs it."""
import json
import math

import h5py
import imageio.v3 as iio
import netCDF4
import numpy as np
import pytest
from typer.testing import CliRunner

from prediff.cli.app import app
from prediff.io.checkpoint import load_checkpoint

# eager, as most tests (51 s against 113 s compiled): compiled training is what the shared trained fixtures run
# (tests/conftest.py), compiled forecasting what the tests marked `compiled` run
pytestmark = pytest.mark.slow

STEPS = "6"


def _ok(*args):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"prediff {' '.join(args)}\n{result.output}"
    return result


def _finite_losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses and all(math.isfinite(v) for v in losses)
    assert any("val_loss" in r for r in records)
    return records


def test_tiny_pipeline_from_scratch(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    _ok("download", "synthetic", "--dest", str(data), "--events", "12", "--seed", "3")
    assert (data / "CATALOG.csv").is_file() and list((data / "data" / "vil").rglob("*.h5"))

    common = ["--config", "tiny", "--data", str(data), "--steps", STEPS]
    _ok("train-vae", *common, "--run-dir", str(runs / "vae"))
    vae = runs / "vae" / "last.ckpt"
    _ok("train-diffusion", *common, "--run-dir", str(runs / "unet"), "--vae", str(vae))
    _ok("train-align", *common, "--run-dir", str(runs / "align"), "--vae", str(vae))
    for component in ("vae", "unet", "align"):
        run_dir = runs / component
        ckpt = load_checkpoint(run_dir / "last.ckpt", component=component)
        assert ckpt.meta["step"] == int(STEPS) and ckpt.config["data"]["root"] == str(data)
        assert ckpt.model and all(np.isfinite(v).all() for v in ckpt.model.values())
        assert (run_dir / "config.yaml").is_file()
        _finite_losses(run_dir)
    ckpts = ["--vae", str(vae), "--unet", str(runs / "unet" / "last.ckpt"),
             "--align-net", str(runs / "align" / "last.ckpt")]

    # Forecast one held-out event file with alignment, as the README does with the demo model.
    radar = sorted((data / "data" / "vil").rglob("*2019*.h5"))[-1]
    out = tmp_path / "forecast"
    _ok("sample", "--input", str(radar), "--out", str(out), "--samples", "2", "--steps", "3", "--align", "avg_x",
        *ckpts)
    with netCDF4.Dataset(out / "forecast.nc") as nc:
        vil = nc.variables["vil"]
        assert vil.shape[:2] == (2, 6) and vil.shape[-2:] == (128, 128)
        values = np.asarray(vil[:])
        assert np.isfinite(values).all() and values.min() >= 0.0
    frames = iio.imread(out / "forecast.gif", index=None)
    assert frames.shape[0] >= 6
    run = json.loads((out / "run.json").read_text())
    assert run["alignment"].startswith("avg_x") and run["alignment_target_vil"] > 0 and (out / "config.yaml").is_file()

    # Score the held-out test split against truth and the three baselines (persistence, optical flow, STEPS ensemble).
    scored = tmp_path / "scores"
    _ok("score", "--split", "test", "--limit", "2", "--data", str(data), "--config", "tiny", "--samples", "2",
        "--steps", "3", "--out", str(scored), *ckpts)
    scores = json.loads((scored / "scores.json").read_text())
    assert set(scores["baselines"]) == {"persistence", "optical_flow", "steps"}
    for block in (scores, *scores["baselines"].values()):
        assert 0.0 <= block["csi"]["avg"] <= 1.0 and block["mse"] >= 0.0
    assert math.isfinite(scores["crps"]["pool1"]) and scores["n_members"] == 2
    with h5py.File(radar) as h5:
        assert h5["vil"].shape[1:3] == (128, 128)
