"""A UNet or alignment network is used only with the VAE it was trained on.

The latent trainers record their frozen VAE in every checkpoint (`vae_checkpoint`: the file's and the weights'
SHA-256); `prediff sample`, `prediff export-model` and `--resume` refuse another VAE, `--allow-mismatch` overrides
sampling, and an exported model (other files, the same weights) keeps the pairing.
"""
import pytest
from typer.testing import CliRunner

from conftest import TINY_STEPS

from prediff.cli.app import app
from prediff.config import load_config
from prediff.errors import InputError
from prediff.io.checkpoint import load_checkpoint, weights_sha256
from prediff.pipelines.training import run as run_module
from prediff.pipelines.training.run import TrainRequest, run_training

FAST = ["--samples", "2", "--steps", "2"]


@pytest.fixture(scope="module")
def other_vae(tmp_path_factory, synthetic_root):
    """A second tiny VAE run (2 steps, seed 1): same architecture as tiny_runs' VAE, other weights."""
    cfg = load_config("tiny", values={"data.root": str(synthetic_root), "seed": 1})
    run_dir = tmp_path_factory.mktemp("other-vae")
    run_training(TrainRequest("vae", cfg, run_dir, steps=2))
    return run_dir


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _refusal(result, *phrases):
    """The one output line of a refused pairing, which names the mismatch and each of `phrases`."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert all(text in lines[0] for text in ("trained with another VAE",) + phrases), lines[0]
    return lines[0]


def _written(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_sample_refuses_a_unet_trained_on_another_vae(tmp_path, tiny_runs, other_vae, radar_file):
    ckpts = ["--vae", other_vae / "last.ckpt", "--unet", tiny_runs["unet"][0] / "last.ckpt",
             "--align-net", tiny_runs["align"][0] / "last.ckpt"]
    refused = tmp_path / "refused"
    _refusal(_invoke("sample", "--input", radar_file, "--out", refused, *ckpts, *FAST), "--allow-mismatch", "--unet")
    assert _written(refused) == []
    allowed = tmp_path / "allowed"
    result = _invoke("sample", "--input", radar_file, "--out", allowed, *ckpts, *FAST, "--allow-mismatch")
    assert result.exit_code == 0, result.output
    assert "forecast.nc" in _written(allowed)


def test_an_exported_model_keeps_the_pairing(tmp_path, tiny_runs, other_vae, radar_file):
    runs = [tiny_runs[c][0] for c in ("vae", "unet", "align")]
    model = tmp_path / "model"
    exported = _invoke("export-model", *runs, "--out", model)
    assert exported.exit_code == 0, exported.output
    # other files than the ones trained with, the same weights: the record's weight digest still matches
    record = load_checkpoint(model / "unet.ckpt").meta["vae_checkpoint"]
    assert record["weights_sha256"] == weights_sha256(load_checkpoint(model / "vae.ckpt").weights())
    result = _invoke("sample", "--model", model, "--input", radar_file, "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 0, result.output

    mixed = tmp_path / "mixed"
    _refusal(_invoke("export-model", other_vae, *runs[1:], "--out", mixed))
    assert _written(mixed) == []


def test_resume_takes_only_the_vae_it_was_trained_with(tmp_path, tiny_runs, other_vae, synthetic_root):
    cfg = load_config("tiny", values={"data.root": str(synthetic_root)})
    run_dir = tiny_runs["align"][0]
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    with pytest.raises(InputError, match="is not the VAE this run was trained with"):
        run_training(TrainRequest("align", cfg, run_dir, steps=30, resume=True,
                                  vae_checkpoint=other_vae / "last.ckpt"))
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before
    # an exported copy of the right VAE (another file, the same weights) is accepted; checked without training
    model = tmp_path / "model"
    assert _invoke("export-model", tiny_runs["vae"][0], tiny_runs["unet"][0], "--out", model).exit_code == 0
    _, point, vae = run_module._resolve(TrainRequest("align", cfg, run_dir, steps=30, resume=True,
                                                     vae_checkpoint=model / "vae.ckpt"))
    assert point.step == TINY_STEPS and vae.record()["weights_sha256"] == point.ckpt.meta["vae_checkpoint"]["weights_sha256"]


def test_export_takes_the_vae_file_the_unet_was_trained_on(tiny_runs):
    """A VAE run holds best.ckpt and last.ckpt; the UNet recorded the one it was trained on (here last.ckpt)."""
    from prediff.pipelines.model import run_checkpoints

    vae_run, unet_run = tiny_runs["vae"][0], tiny_runs["unet"][0]
    assert (vae_run / "best.ckpt").is_file()
    found = run_checkpoints([vae_run, unet_run])
    assert found["vae"] == vae_run / "last.ckpt" and found["unet"].parent == unet_run


def test_export_model_sets_the_default_forecast_settings_and_nothing_else(tmp_path, tiny_runs):
    """`export-model --set sample.KEY=VALUE` changes the model's default sampling (what `sample` starts from); any
    other key is refused in one line and nothing is written."""
    from prediff.config.forecast_settings import forecast_config
    from prediff.config.schema import to_plain
    from prediff.pipelines.model import load_model

    runs = [tiny_runs[c][0] for c in ("vae", "unet", "align")]
    out = tmp_path / "model"
    result = _invoke("export-model", *runs, "--out", out, "--set", "sample.sampler=dpmpp", "--set", "sample.steps=7",
                     "--set", "sample.eta=0.5")
    assert result.exit_code == 0, result.output
    model = load_model(out)
    resolved = forecast_config(model.config, None, [])
    assert (resolved.sample.sampler, resolved.sample.steps, resolved.sample.eta) == ("dpmpp", 7, 0.5)
    trained = load_checkpoint(runs[1] / "last.ckpt", component="unet").config
    exported = to_plain(model.config)
    assert {k: v for k, v in exported.items() if k != "sample"} == {k: v for k, v in trained.items() if k != "sample"}
    assert (trained["sample"]["sampler"], trained["sample"]["steps"]) != ("dpmpp", 7)
    bad = tmp_path / "bad"
    refused = _invoke("export-model", *runs, "--out", bad, "--set", "unet.base_units=8")
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert refused.exit_code == 2 and len(lines) == 1 and "sample.KEY=VALUE" in lines[0], refused.output
    assert not bad.exists()


def test_a_models_alignment_network_is_left_out_when_given_networks_replace_its_vae(tmp_path, tiny_runs, radar_file):
    """`--vae/--unet` with the bundled model's align.ckpt filling in: that network was trained on the demo's VAE, so
    it is left out (forecasts without alignment work) and asking for alignment says why, in one line."""
    from prediff.pipelines.model import load_model

    vae, unet = tiny_runs["vae"][0] / "last.ckpt", tiny_runs["unet"][0] / "last.ckpt"
    model = load_model("demo", vae=vae, unet=unet)
    assert not model.has_align and "align.ckpt" in model.dropped["align"]
    assert load_model("demo").has_align  # the bundled model on its own keeps it
    plain = _invoke("sample", "--input", radar_file, "--out", tmp_path / "plain", "--vae", vae, "--unet", unet,
                    "--align", "none", *FAST)
    assert plain.exit_code == 0, plain.output
    aligned = _invoke("sample", "--input", radar_file, "--out", tmp_path / "aligned", "--vae", vae, "--unet", unet,
                      "--align", "avg_x", *FAST)
    lines = [line for line in aligned.output.splitlines() if line.strip()]
    assert aligned.exit_code == 2 and len(lines) == 1 and "--align-net" in lines[0], aligned.output
    assert "align.ckpt" in lines[0] and not (tmp_path / "aligned").exists()
