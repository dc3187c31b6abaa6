"""`prediff score`: both modes, baselines on the same cases, clean mismatch errors, resumable evaluation."""
import datetime as dt
import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from prediff.cli.app import app
from prediff.config import load_config
from prediff.io.netcdf import write_forecast


@pytest.fixture(scope="module")
def ckpts(tiny_runs):
    return {k: str(v[0] / "last.ckpt") for k, v in tiny_runs.items()}


@pytest.fixture(scope="module")
def forecast_nc(tmp_path_factory, radar_file, ckpts):
    out = tmp_path_factory.mktemp("fc")
    result = CliRunner().invoke(app, ["sample", "--input", str(radar_file), "--out", str(out), "--samples", "3",
                                      "--steps", "4", "--vae", ckpts["vae"], "--unet", ckpts["unet"]])
    assert result.exit_code == 0, result.output
    return out / "forecast.nc"


def _score(*args):
    return CliRunner().invoke(app, ["score", *args])


def test_score_a_forecast_file(tmp_path, forecast_nc, radar_file):
    result = _score("--forecast", str(forecast_nc), "--truth", str(radar_file), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "CSI-M (avg)" in result.output and "persistence" in result.output
    scores = json.loads((tmp_path / "scores.json").read_text())
    for key in ("csi", "pod", "sucr", "bias", "bias_official", "csi_pool4", "csi_pool16", "mse", "mae", "ssim",
                "crps", "fss", "spread_skill", "per_lead_time", "baselines", "settings"):
        assert key in scores, key
    assert set(scores["csi"]) == {"16", "74", "133", "160", "181", "219", "avg"}
    assert set(scores["baselines"]) == {"persistence", "optical_flow", "steps"}
    assert scores["n_members"] == 3 and scores["settings"]["mode"] == "forecast"
    assert len(scores["per_lead_time"]["mse"]) == 6
    # STEPS: as many members as the forecast, its settings recorded, printed in the table
    assert scores["baselines"]["steps"]["n_members"] == 3 and "steps" in result.output
    assert scores["settings"]["baselines"]["steps"]["noise_method"] == "nonparametric"
    assert scores["settings"]["rank_min"] == 16.0 and "74" in scores["exceedance"]
    # one case: no intervals, and a note says why
    assert scores["intervals"] is None and all(d is None for d in scores["differences"].values())
    assert any("fewer than 2 events" in n for n in scores["notes"])
    for name in ("csi_by_threshold.png", "csi_by_lead_time.png", "rank_histogram.png", "reliability.png",
                 "cases.npz", "config.yaml"):
        assert (tmp_path / name).is_file()


def test_baselines_and_rank_min_options(tmp_path, forecast_nc, radar_file):
    result = _score("--forecast", str(forecast_nc), "--truth", str(radar_file), "--out", str(tmp_path / "a"),
                    "--baselines", "persistence", "--rank-min", "0")
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "a" / "scores.json").read_text())
    assert list(scores["baselines"]) == ["persistence"] and scores["settings"]["rank_min"] == 0.0
    assert sum(scores["rank_histogram"]) == 6 * 128 * 128  # every pixel of every lead time
    bad = _score("--forecast", str(forecast_nc), "--truth", str(radar_file), "--out", str(tmp_path / "b"),
                 "--baselines", "persistence,climatology")
    assert bad.exit_code == 2 and "persistence, optical_flow, steps" in bad.output
    assert not (tmp_path / "b" / "scores.json").exists()


def _write_nc(path, members, radar_file, leads=range(10, 70, 10), reference=dt.datetime(2019, 7, 1, 19, 0)):
    with h5py.File(radar_file) as h5:
        context = np.moveaxis(h5["vil"][0, :, :, :7], -1, 0) / 255.0
    write_forecast(path, members, reference_time=reference, lead_minutes=list(leads), context=context)
    return path


def test_perfect_forecast_scores_perfectly(tmp_path, radar_file):
    with h5py.File(radar_file) as h5:
        truth = np.moveaxis(h5["vil"][0, :, :, 7:13], -1, 0).astype(np.float32) / 255.0
    nc = _write_nc(tmp_path / "perfect.nc", np.stack([truth, truth]), radar_file)
    result = _score("--forecast", str(nc), "--truth", str(radar_file), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    present = [k for k, v in scores["csi"].items() if k != "avg" and (truth * 255 >= float(k)).any()]
    assert present and all(scores["csi"][k] == pytest.approx(1.0, abs=1e-4) for k in present)
    assert scores["crps"]["pool1"] == pytest.approx(0.0, abs=1e-6) and scores["mse"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("case, message", [
    ("event", "other frames"), ("size", "grid sizes differ"), ("leads", "lead times differ"),
    ("time", "times differ"), ("no_truth", "no frames"),
])
def test_mismatches_give_one_line(tmp_path, radar_file, forecast_nc, case, message):
    args = ["--forecast", str(forecast_nc), "--truth", str(radar_file)]
    if case == "event":
        args += ["--event", "1"]
    elif case == "size":
        nc = tmp_path / "small.nc"
        write_forecast(nc, np.zeros((1, 6, 64, 64), np.float32), reference_time=dt.datetime(2019, 7, 1, 19),
                       lead_minutes=range(10, 70, 10))
        args = ["--forecast", str(nc), "--truth", str(radar_file)]
    elif case == "leads":
        nc = _write_nc(tmp_path / "leads.nc", np.zeros((1, 6, 128, 128), np.float32), radar_file,
                       leads=range(5, 35, 5))
        args = ["--forecast", str(nc), "--truth", str(radar_file)]
    elif case == "time":
        nc = _write_nc(tmp_path / "time.nc", np.zeros((1, 6, 128, 128), np.float32), radar_file,
                       reference=dt.datetime(2020, 1, 1))
        args = ["--forecast", str(nc), "--truth", str(radar_file)]
    elif case == "no_truth":
        args += ["--start", "18"]
    result = _score(*args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "scores.json").exists()


def test_mode_choice_errors(tmp_path, forecast_nc):
    assert "choose one mode" in _score("--out", str(tmp_path)).output
    assert "needs --truth" in _score("--forecast", str(forecast_nc), "--out", str(tmp_path)).output


def test_split_evaluation_resumes_to_the_same_scores(tmp_path, synthetic_root, tiny_runs, ckpts):
    from prediff.pipelines.model import Checkpoints
    from prediff.pipelines.score_run import run_score

    base = dict(split="test", limit=4, checkpoints=Checkpoints(ckpts["vae"], ckpts["unet"]),
                sets=["score.batch_size=2", "sample.samples=2", "sample.steps=3"],
                values={"data.root": str(synthetic_root)})
    full, _, _ = run_score(tmp_path / "full", **base)
    assert full["n_cases"] == 4 and not (tmp_path / "full" / ".evaluation").exists()

    class Stop(Exception):
        pass

    def stop_after_first_batch(done, total):
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        run_score(tmp_path / "part", progress=stop_after_first_batch, **base)
    assert json.loads((tmp_path / "part" / ".evaluation" / "progress.json").read_text())["done"] == 2
    with pytest.raises(Exception, match="--resume"):
        run_score(tmp_path / "part", **base)
    resumed, _, _ = run_score(tmp_path / "part", resume=True, **base)
    assert resumed["csi"] == full["csi"] and resumed["crps"] == full["crps"]
    assert resumed["baselines"]["optical_flow"]["mse"] == full["baselines"]["optical_flow"]["mse"]
    # the per-case totals resume too: the same STEPS members (seeded per case) and the same intervals
    assert resumed["baselines"]["steps"]["crps"] == full["baselines"]["steps"]["crps"]
    assert resumed["intervals"] == full["intervals"] and resumed["differences"] == full["differences"]
    assert full["intervals"]["cases"] == 4 and full["intervals"]["events"] == 2  # 3 sequences per event


SETTINGS = ["sample.samples=3", "sample.sampler=dpmpp", "sample.steps=3", "sample.eta=1", "sample.member_batch=2",
            "sample.align=avg_x", "sample.align_factor=1.5", "sample.guide_scale=30", "score.batch_size=2"]


def test_split_evaluation_forecasts_each_case_as_sample_does(tmp_path, synthetic_root, ckpts, monkeypatch):
    """Case i of `score --split` gets exactly the members of `prediff sample --seed (seed + i)` on that case, with
    every sampling setting honoured (sampler, steps, eta, alignment, guide scale, member batch)."""
    import h5py

    from prediff.data import open_dataset
    from prediff.pipelines import forecast as F
    from prediff.pipelines.model import Checkpoints
    from prediff.pipelines.score_run import run_score

    captured = []
    original = F.Forecaster.run

    def capture(self, contexts, y_hat, seeds, progress=None):
        members = original(self, contexts, y_hat, seeds, progress)
        captured.append(members)
        return members

    monkeypatch.setattr(F.Forecaster, "run", capture)
    models = Checkpoints(ckpts["vae"], ckpts["unet"], ckpts["align"])
    run_score(tmp_path / "scores", split="test", limit=3, checkpoints=models,
              sets=SETTINGS + ["score.baselines=[persistence]"],  # the members are the subject here, not the baselines
              values={"data.root": str(synthetic_root), "seed": 40})
    scored = np.concatenate(captured)  # (3, 3, 6, H, W): batches of 2 and 1 cases
    assert scored.shape[:2] == (3, 3)
    seqs = open_dataset(load_config("tiny", values={"data.root": str(synthetic_root)}).data).split("test")
    for case, seed in ((0, 40), (2, 42), (0, 41)):
        radar = tmp_path / f"case{case}.h5"
        with h5py.File(radar, "w") as h5:
            h5["vil"] = seqs[case][..., 0]
            h5["time_utc"] = np.array([b"2019-07-01T18:00:00"])
        captured.clear()
        result = CliRunner().invoke(app, ["sample", "--input", str(radar), "--out", str(tmp_path / f"fc{seed}"),
                                          "--vae", str(ckpts["vae"]), "--unet", str(ckpts["unet"]), "--align-net",
                                          str(ckpts["align"]), "--seed", str(seed),
                                          *[x for item in SETTINGS for x in ("--set", item)]])
        assert result.exit_code == 0, result.output
        difference = np.abs(captured[0][0] - scored[case]).max()
        if seed == 40 + case:
            # the same noise; only float32 rounding differs (convolutions over 2 sequences vs 1 in one call)
            assert difference < 1e-5
        else:
            assert difference > 1e-2  # another seed: other members


@pytest.mark.parametrize("bad, message", [
    ("sample.member_batch=-1", "'sample.member_batch': -1 is not valid; expected an integer >= 0"),
    ("sample.align_target=300", "'sample.align_target': 300.0 is not valid"),
])
def test_invalid_settings_fail_identically_in_sample_and_score(tmp_path, radar_file, synthetic_root, ckpts, bad,
                                                               message):
    models = ["--vae", str(ckpts["vae"]), "--unet", str(ckpts["unet"])]
    sample = CliRunner().invoke(app, ["sample", "--input", str(radar_file), "--out", str(tmp_path / "a"), *models,
                                      "--set", bad])
    score = CliRunner().invoke(app, ["score", "--data", str(synthetic_root), "--split", "test", "--out",
                                     str(tmp_path / "b"), *models, "--set", bad])
    assert sample.exit_code == score.exit_code == 2
    assert message in sample.output and sample.output.strip() == score.output.strip()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
