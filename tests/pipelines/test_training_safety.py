"""Training runs that are killed, resumed with the wrong options, or use dropout.

* `last.ckpt` is replaced so that a complete, resumable checkpoint exists at every instant; `--resume` falls back
  to the newest loadable `last-<step>.ckpt` and says so.
* a resumed run refuses config changes that alter training and lengths that do not go beyond the step reached,
  before writing anything.
* dropout masks are functions of (seed, step): a resumed run with dropout repeats the uninterrupted one bit for bit.
"""
import dataclasses

import numpy as np
import pytest
from typer.testing import CliRunner

import prediff  # noqa: F401  (environment before MindSpore)
from mindspore import Tensor, nn, ops

from prediff.config import load_config
from prediff.errors import PrediffError
from prediff.io.checkpoint import load_checkpoint
from prediff.pipelines.training import trainer as trainer_module
from prediff.pipelines.training.task import TrainingTask
from prediff.pipelines.training.train_step import StepDropout
from prediff.pipelines.training.trainer import Trainer


# ------------------------------------------------------------------------------------------------------------------
# a trainer around a trivial task: checkpoint mechanics in milliseconds


class _CountingTask(TrainingTask):
    """Counts optimizer steps; its "optimizer state" is the count, its weights a small Dense layer."""

    component = "vae"

    def __init__(self):
        self.net = nn.Dense(2, 2)
        self.model_kwargs = {}
        self.train_steps = []
        self.count = 0

    def optimizer_step(self, step, batches, rng):
        self.count += 1
        return {"loss": 1.0 / self.count, "lr": 0.1, "grad_norm": 0.0}

    def state(self, live=False):
        return {"count": np.array([self.count], np.int64)}

    def load_state(self, state):
        self.count = int(state["count"][0])

    def step_count(self):
        return self.count


class _Batches:
    batches_per_epoch = 4

    def batch(self, index):
        return np.zeros((1, 2), np.float32)


class _Recorder:
    def __init__(self):
        self.resumed = []

    def on_resume(self, path, step, skipped):
        self.resumed.append((path.name, step, skipped))

    def __getattr__(self, name):
        return lambda *a, **k: None


def _trainer(run_dir, steps, listener=None):
    cfg = load_config("tiny")
    section = dataclasses.replace(cfg.train_vae, steps=steps, ckpt_every=2, keep_ckpts=2, log_every=1, ema_decay=0.0)
    return Trainer(_CountingTask(), run_dir=run_dir, config=cfg, section=section, train_data=_Batches(),
                   listener=listener)


def _step(path):
    return load_checkpoint(path).meta["step"]


def test_a_kill_while_saving_keeps_a_resumable_last_ckpt(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _trainer(run, 4).fit()  # last.ckpt = step 4, last-2.ckpt
    real_save = trainer_module.save_checkpoint

    def killed(path, ckpt):  # the process dies while writing the step-6 checkpoint
        if ckpt.meta["step"] == 6:
            raise KeyboardInterrupt
        return real_save(path, ckpt)

    monkeypatch.setattr(trainer_module, "save_checkpoint", killed)
    t = _trainer(run, 8)
    t.resume()
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
    assert _step(run / "last.ckpt") == 4
    again = _trainer(run, 8)
    assert again.resume() == 4
    assert again.fit().step == 8 and _step(run / "last.ckpt") == 8


def test_a_kill_between_rotation_and_rename_keeps_both_checkpoints(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _trainer(run, 4).fit()

    def killed(tmp, path):  # after the new file is complete and the old one has its second name, before the rename
        raise KeyboardInterrupt

    t = _trainer(run, 6)
    t.resume()
    monkeypatch.setattr(trainer_module, "commit", killed)
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    monkeypatch.undo()
    assert _step(run / "last.ckpt") == 4 and _step(run / "last-4.ckpt") == 4  # the same complete file, twice
    assert _step(run / ".last.staged.ckpt") == 6  # complete, but never what --resume reads
    again = _trainer(run, 6)
    assert again.resume() == 4
    again.fit()
    assert _step(run / "last.ckpt") == 6
    assert sorted(p.name for p in run.glob("last-*.ckpt")) == ["last-2.ckpt", "last-4.ckpt"]
    assert [_step(run / f"last-{s}.ckpt") for s in (2, 4)] == [2, 4]


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_resume_falls_back_to_the_newest_loadable_rotated_checkpoint(tmp_path, damage):
    run = tmp_path / "run"
    _trainer(run, 6).fit()  # last.ckpt = 6, last-2, last-4
    if damage == "missing":
        (run / "last.ckpt").unlink()
    else:
        (run / "last.ckpt").write_bytes(b"half a checkpoint")
    listener = _Recorder()
    t = _trainer(run, 8, listener)
    assert t.resume() == 4
    name, step, skipped = listener.resumed[0]
    assert (name, step) == ("last-4.ckpt", 4) and len(skipped) == 1 and "last.ckpt" in skipped[0]
    result = t.fit()
    assert result.resumed_from == run / "last-4.ckpt" and result.step == 8
    # the broken last.ckpt was replaced, never rotated over the good copies
    assert _step(run / "last.ckpt") == 8 and [_step(run / f"last-{s}.ckpt") for s in (4, 6)] == [4, 6]
    with pytest.raises(PrediffError, match="holds no last.ckpt"):
        _trainer(tmp_path / "empty", 2).resume()


def test_a_fresh_run_refuses_a_directory_with_only_rotated_checkpoints(tmp_path):
    run = tmp_path / "run"
    _trainer(run, 4).fit()
    (run / "last.ckpt").unlink()
    config = (run / "config.yaml").read_bytes()
    with pytest.raises(PrediffError, match="--resume"):
        _trainer(run, 4).fit()
    assert (run / "config.yaml").read_bytes() == config


# ------------------------------------------------------------------------------------------------------------------
# the CLI on resume: refused options write nothing; the fallback is reported


def _snapshot(run_dir):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run_dir.iterdir()) if p.is_file()}


def test_resume_refuses_changes_and_short_lengths_without_writing(tmp_path, synthetic_root):
    from prediff.cli.app import app

    runner = CliRunner()
    run = tmp_path / "vae"
    base = ["train-vae", "--config", "tiny", "--data", str(synthetic_root), "--run-dir", str(run),
            "--set", "train_vae.ckpt_every=1", "--set", "train_vae.log_every=1", "--set", "train_vae.val_every=100"]
    first = runner.invoke(app, base + ["--steps", "2"])
    assert first.exit_code == 0, first.output
    before = _snapshot(run)
    assert {"config.yaml", "metrics.jsonl", "last.ckpt", "last-1.ckpt"} <= set(before)

    resume = ["train-vae", "--data", str(synthetic_root), "--run-dir", str(run), "--resume"]
    refused = runner.invoke(app, resume + ["--steps", "4", "--set", "train_vae.lr=0.5"])
    assert refused.exit_code == 2
    assert "train_vae.lr=0.5" in refused.output and "0.001" in refused.output
    assert refused.output.count("error:") == 1 and "Traceback" not in refused.output
    for steps in ("2", "1"):  # not beyond step 2
        short = runner.invoke(app, resume + ["--steps", steps])
        assert short.exit_code == 2 and "is at step 2" in short.output and "larger --steps" in short.output
    plain = runner.invoke(app, resume)  # the stored 2 steps are done
    assert plain.exit_code == 2 and "is at step 2" in plain.output
    seed = runner.invoke(app, resume + ["--steps", "4", "--seed", "7"])
    assert seed.exit_code == 2 and "seed=7" in seed.output
    assert _snapshot(run) == before

    # the cadence and the length may change; a missing last.ckpt falls back to last-1.ckpt and says so
    (run / "last.ckpt").unlink()
    ok = runner.invoke(app, resume + ["--steps", "3", "--set", "train_vae.log_every=2"])
    assert ok.exit_code == 0, ok.output
    assert "resuming from" in ok.output and "last-1.ckpt at step 1" in ok.output and "last.ckpt is missing" in ok.output
    ckpt = load_checkpoint(run / "last.ckpt", component="vae")
    assert ckpt.meta["step"] == 3 and ckpt.config["train_vae"]["log_every"] == 2
    assert ckpt.config["train_vae"]["lr"] == pytest.approx(1e-3)


# ------------------------------------------------------------------------------------------------------------------
# dropout keyed by (seed, step)


class _Dropped(nn.Cell):
    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(64, 64)
        self.inner = nn.SequentialCell([nn.Dropout(p=0.25), nn.Dropout(p=0.0)])

    def construct(self, x):
        return self.inner(self.dense(x))


@pytest.mark.compiled
def test_step_dropout_masks_are_functions_of_the_key():
    from prediff.compile import compiled

    net = _Dropped()
    names = [n for n, _ in net.parameters_and_names()]
    dropout = StepDropout.install(net)
    assert dropout.layers == 1 and [n for n, _ in net.parameters_and_names()] == names  # checkpoints unchanged
    assert StepDropout.install(nn.Dense(2, 2)) is None
    net.set_train(True)

    def forward(x):
        return net(x)

    run = compiled(dropout.keyed(forward))
    x = Tensor(np.ones((32, 64), np.float32))

    def out(seed, step, micro=0):
        dropout.begin_step(seed, step)
        return run(dropout.key(micro), x).asnumpy()

    plain = ops.stop_gradient(net.dense(x)).asnumpy()
    a = out(0, 3)
    kept = a != 0
    assert 0.7 < kept.mean() < 0.8  # p = 0.25
    np.testing.assert_allclose(a[kept], plain[kept] / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(out(0, 3), a)  # same (seed, step): same mask, in the compiled graph
    assert not np.array_equal(out(0, 4), a) and not np.array_equal(out(1, 3), a)
    assert not np.array_equal(out(0, 3, micro=1), a)
    net.set_train(False)
    np.testing.assert_allclose(net(x).asnumpy(), plain, rtol=1e-6)
