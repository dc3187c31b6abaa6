"""The three trainers: they learn, resume exactly, checkpoint everything, stop cleanly, reject bad inputs."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import TINY_STEPS
from prediff.config import load_config
from prediff.errors import InputError, PrediffError
from prediff.io.checkpoint import file_sha256, load_checkpoint, weights_sha256
from prediff.pipelines.training.run import TrainRequest, run_training
from prediff.pipelines.training.trainer import TrainingListener


def _records(run_dir, key):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r[key]) for r in rows if key in r]


def test_vae_learns(tiny_runs):
    run_dir, result = tiny_runs["vae"]
    val = _records(run_dir, "val_rec_mae")
    assert result.step == TINY_STEPS and result.status == "finished"
    train = _records(run_dir, "nll")
    assert train[-1][1] < 0.5 * train[0][1]  # L1 sum per frame falls by half within 30 steps
    assert val[-1][1] < 0.06  # mean |x − x̂| on 0–1; untrained weights give ~0.5
    disc = _records(run_dir, "d_loss")
    assert disc and disc[0][0] > load_config("tiny").train_vae.disc_start  # the discriminator switched on


def test_diffusion_learns(tiny_runs):
    run_dir, _ = tiny_runs["unet"]
    val = _records(run_dir, "val_loss")
    # a fresh UNet predicts ε = 0 (zero-initialised output layer): MSE 1
    assert val[-1][1] < 0.85


def test_alignment_learns(tiny_runs):
    run_dir, _ = tiny_runs["align"]
    train = _records(run_dir, "loss")
    assert train[-1][1] < 0.25 * train[0][1]  # a 4x drop in the tiny run: it learns
    assert _records(run_dir, "val_mae")[-1][1] < 0.05


def test_checkpoint_contents(tiny_runs):
    run_dir, _ = tiny_runs["unet"]
    ckpt = load_checkpoint(run_dir / "last.ckpt", component="unet")
    assert ckpt.meta["step"] == TINY_STEPS and ckpt.meta["rng"] == {"seed": 0, "step": TINY_STEPS}
    assert ckpt.model_kwargs == load_config("tiny").model_kwargs("unet")
    assert ckpt.config["preset"] == "tiny" and ckpt.config["train_diffusion"]["steps"] == TINY_STEPS
    assert set(ckpt.ema) == set(ckpt.model) and "logvar" in ckpt.aux
    assert any(not np.array_equal(ckpt.ema[k], ckpt.model[k]) for k in ckpt.model)
    assert int(ckpt.optim["unet.global_step"].reshape(-1)[0]) == TINY_STEPS
    vae = tiny_runs["vae"][0] / "last.ckpt"
    assert ckpt.meta["vae_checkpoint"] == {"path": str(vae.resolve()), "sha256": file_sha256(vae),
                                           "weights_sha256": weights_sha256(load_checkpoint(vae).weights())}
    assert (run_dir / "best.ckpt").is_file() and (run_dir / "config.yaml").is_file()
    rotated = sorted(p.name for p in run_dir.glob("last-*.ckpt"))
    assert rotated == ["last-10.ckpt", "last-20.ckpt"]  # keep_ckpts = 2, saved every 10 steps and at the end


class _StopAfter(TrainingListener):
    """Raises the trainer's stop flag after a given step (what SIGINT does)."""

    def __init__(self, step):
        self.step, self.trainer = step, None

    def on_step(self, record):
        if record["step"] == self.step:
            self.trainer._stop_signal = signal.SIGINT


def run_interrupted(request, stop_after):
    """`run_training(request)` stopped after step `stop_after` as SIGINT stops it: (its result, its Trainer)."""
    from prediff.pipelines.training import run as run_module

    stopper = _StopAfter(stop_after)
    original = run_module.Trainer

    class Capturing(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            stopper.trainer = self

    run_module.Trainer = Capturing
    try:
        return run_training(request, listener=stopper), stopper.trainer
    finally:
        run_module.Trainer = original


def test_resume_reproduces_the_uninterrupted_run(tmp_path, synthetic_root, tiny_runs):
    vae = tiny_runs["vae"][0] / "last.ckpt"
    # the config's dropout stays on: its masks are keyed by (seed, step), like every other draw, so the resumed run
    # repeats the uninterrupted one exactly
    cfg = load_config("tiny", ["train_align.log_every=1", "train_align.ckpt_every=100"],
                      {"data.root": str(synthetic_root)})
    assert cfg.align.attn_drop > 0 and cfg.align.proj_drop > 0 and cfg.align.ffn_drop > 0
    full = tmp_path / "full"
    run_training(TrainRequest("align", cfg, full, steps=6, vae_checkpoint=vae))

    part = tmp_path / "part"
    first, trainer = run_interrupted(TrainRequest("align", cfg, part, steps=6, vae_checkpoint=vae), stop_after=3)
    assert trainer.task.dropout is not None and trainer.task.dropout.layers > 0
    assert first.status == "interrupted" and first.step == 3
    assert load_checkpoint(part / "last.ckpt").meta["step"] == 3
    second = run_training(TrainRequest("align", cfg, part, steps=6, resume=True))  # --vae comes from the ckpt
    assert second.status == "finished" and second.step == 6
    a, b = _records(full, "loss"), _records(part, "loss")
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 7))
    assert [v for _, v in b] == [v for _, v in a]
    left, right = load_checkpoint(full / "last.ckpt"), load_checkpoint(part / "last.ckpt")
    for group in ("model", "optim"):  # bit for bit, dropout included
        assert all(np.array_equal(getattr(left, group)[k], getattr(right, group)[k]) for k in getattr(left, group))


@pytest.mark.compiled
def test_blockwise_unet_trainer_follows_the_single_graph_one(tmp_path, synthetic_root, tiny_runs):
    """`train_diffusion.recompute: 3` (the UNet differentiated block by block) trains the same run: the loss it logs
    at step 5 (after four updates, dropout and the learned log-variance included) is the one the shared tiny run,
    trained in one graph with the same config otherwise, logged there. (tests/models/test_recompute.py compares
    the two gradients' weights directly.)"""
    vae = tiny_runs["vae"][0] / "last.ckpt"
    cfg = load_config("tiny", ["train_diffusion.recompute=3"], {"data.root": str(synthetic_root)})
    assert cfg.unet.attn_drop > 0 and cfg.train_diffusion.log_every == 5
    result, trainer = run_interrupted(TrainRequest("unet", cfg, tmp_path / "blockwise", steps=TINY_STEPS,
                                                   vae_checkpoint=vae), stop_after=5)
    assert type(trainer.task.train_steps[0]._gradient).__name__ == "BlockwiseGradient" and result.step == 5
    single = dict(_records(tiny_runs["unet"][0], "loss"))
    (step, loss), = _records(tmp_path / "blockwise", "loss")
    assert step == 5 and loss == pytest.approx(single[5], rel=1e-5)


def test_fresh_run_refuses_an_existing_run_dir(tiny_runs, synthetic_root):
    run_dir = tiny_runs["align"][0]
    cfg = load_config("tiny", values={"data.root": str(synthetic_root)})
    with pytest.raises(PrediffError, match="--resume"):
        run_training(TrainRequest("align", cfg, run_dir, steps=40, vae_checkpoint=tiny_runs["vae"][0] / "last.ckpt"))


def test_bad_vae_checkpoints(tmp_path, tiny_runs, synthetic_root):
    cfg = load_config("tiny", values={"data.root": str(synthetic_root)})
    with pytest.raises(InputError, match="--vae is required"):
        run_training(TrainRequest("unet", cfg, tmp_path / "a", steps=2))
    with pytest.raises(InputError, match="not found"):
        run_training(TrainRequest("unet", cfg, tmp_path / "b", steps=2, vae_checkpoint=tmp_path / "missing.ckpt"))
    with pytest.raises(InputError, match="holds a unet checkpoint, but a vae"):
        run_training(TrainRequest("unet", cfg, tmp_path / "c", steps=2,
                                  vae_checkpoint=tiny_runs["unet"][0] / "last.ckpt"))
    wide = load_config("tiny", ["unet.input_shape=[7,16,16,8]", "unet.target_shape=[6,16,16,8]"],
                       {"data.root": str(synthetic_root)})
    with pytest.raises(InputError, match="latent channels"):
        run_training(TrainRequest("unet", wide, tmp_path / "d", steps=2,
                                  vae_checkpoint=tiny_runs["vae"][0] / "last.ckpt"))


def test_cli_errors_are_one_line(tmp_path, synthetic_root):
    from typer.testing import CliRunner

    from prediff.cli.app import app

    runner = CliRunner()
    result = runner.invoke(app, ["train-vae", "--config", "tiny", "--set", "train_vae.lr=fast", "--run-dir",
                                 str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "config key 'train_vae.lr'" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["train-align", "--config", "tiny", "--data", str(synthetic_root), "--run-dir",
                                 str(tmp_path / "y")])
    assert result.exit_code == 2 and "--vae is required" in result.output
    result = runner.invoke(app, ["train-vae", "--config", "tiny", "--run-dir", str(tmp_path / "z")])
    assert result.exit_code == 2 and "no dataset given" in result.output


def test_sigint_saves_a_loadable_checkpoint(tmp_path, synthetic_root, tiny_runs):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "prediff", "train-align", "--config", "tiny", "--data", str(synthetic_root),
           "--vae", str(tiny_runs["vae"][0] / "last.ckpt"), "--run-dir", str(run_dir), "--steps", "500",
           "--set", "train_align.log_every=1", "--set", "train_align.ckpt_every=1000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.time() + 300
    metrics = run_dir / "metrics.jsonl"
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out.decode()[-2000:]
    ckpt = load_checkpoint(run_dir / "last.ckpt", component="align")
    assert 2 <= ckpt.meta["step"] < 500
    assert b"continue with --resume" in out


@pytest.mark.slow
def test_two_data_parallel_workers_end_with_equal_weights(tmp_path, synthetic_root):
    """`--workers 2` relaunches under msrun; both ranks train on different shards and end on identical weights."""
    run_dir = tmp_path / "dp"
    cmd = [sys.executable, "-m", "prediff", "train-vae", "--config", "tiny", "--data", str(synthetic_root),
           "--steps", "3", "--set", "train_vae.micro_batch_size=2", "--set", "train_vae.total_batch_size=4",
           "--run-dir", str(run_dir), "--workers", "2", "--msrun-timeout", "400"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=480)
    logs = "".join(p.read_text(errors="replace")[-2000:] for p in (run_dir / "msrun_logs").glob("*.log"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + logs
    ranks = [json.loads((run_dir / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [3, 3]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    ckpt = load_checkpoint(run_dir / "last.ckpt", component="vae")
    assert ckpt.meta["world_size"] == 2 and ckpt.meta["accum_steps"] == 1
