"""The trainer core shared by `train-vae`, `train-diffusion` and `train-align`.

Reproducibility by construction: the data position and every random draw of an optimizer step are pure
functions of (seed, step) — micro-batch `k` of step `s` is global batch `s·accum + k` of the seeded epoch order,
and its noise comes from `numpy.random.default_rng([seed, s])`. A resumed run therefore sees exactly the batches
and noise the uninterrupted run would have seen; the checkpoint's "RNG state" is that (seed, step) pair.
(MindSpore's dropout draws from a process-global stream that cannot be rewound, so with dropout > 0 a resumed
run matches the uninterrupted one in distribution, not bit for bit.)

Outputs in the run directory: `config.yaml` (resolved config), `metrics.jsonl` (one JSON object per logged
step and per validation, each with `step`), `last.ckpt` (every `ckpt_every` steps, at the end and on
SIGINT/SIGTERM; older copies rotated to `last-<step>.ckpt`), `best.ckpt` (lowest validation loss).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Protocol

import numpy as np

from prediff_cli.config import Config, TrainConfig, to_plain, write_resolved_config
from prediff_cli.errors import PrediffError
from prediff_cli.io.checkpoint import Checkpoint, load_checkpoint, net_weights, save_checkpoint

from .ema import EMA
from .task import TrainingTask


class BatchSource(Protocol):
    """Random access to training micro-batches: `batch(i)` is global micro-batch `i` (epoch-major)."""

    batches_per_epoch: int

    def batch(self, index: int) -> np.ndarray: ...


class TrainingListener:
    """Receives progress events (the CLI turns them into a live display). All methods are optional."""

    def on_start(self, start_step: int, total_steps: int) -> None: ...

    def on_step(self, record: dict) -> None: ...

    def on_validation(self, record: dict) -> None: ...

    def on_checkpoint(self, path: Path, kind: str) -> None: ...

    def on_end(self, status: "TrainingResult") -> None: ...


@dataclass
class TrainingResult:
    status: str  # "finished" or "interrupted"
    step: int
    last_checkpoint: Optional[Path]
    best_checkpoint: Optional[Path]
    last_metrics: dict
    best_val: Optional[float]


class Trainer:
    def __init__(self, task: TrainingTask, *, run_dir: Path, config: Config, section: TrainConfig,
                 train_data: BatchSource, val_data: Optional[Callable[[], Iterable[np.ndarray]]] = None,
                 accum_steps: int = 1, rank: int = 0, world_size: int = 1,
                 listener: Optional[TrainingListener] = None):
        self.task = task
        self.run_dir = Path(run_dir)
        self.config = config
        self.section = section
        self.train_data = train_data
        self.val_data = val_data
        self.accum_steps = int(accum_steps)
        self.rank, self.world_size = rank, world_size
        self.listener = listener or TrainingListener()
        self.ema = EMA(task.net, section.ema_decay) if section.ema_decay > 0 else None
        self.best_val: Optional[float] = None
        self._stop_signal: Optional[int] = None
        self._last_saved_step: Optional[int] = None  # step stored in run_dir/last.ckpt, once known
        self.is_main = rank == 0

    # ------------------------------------------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def resume(self) -> int:
        """Restore weights, optimizer, EMA and counters from `run_dir/last.ckpt`; returns the step reached."""
        path = self.run_dir / "last.ckpt"
        if not path.is_file():
            raise PrediffError(f"cannot resume: {path} does not exist (start without --resume)")
        ckpt = load_checkpoint(path, component=self.task.component)
        from prediff_cli.io.checkpoint import load_weights

        load_weights(self.task.net, ckpt.model, source=str(path))
        try:
            self.task.load_state(ckpt.optim)
            self.task.load_aux_state(ckpt.aux)
        except ValueError as exc:
            raise PrediffError(f"cannot resume from {path}: {exc}") from None
        if self.ema is not None:
            if not ckpt.ema:
                raise PrediffError(f"cannot resume from {path}: it has no EMA weights but ema_decay > 0")
            self.ema.load_state(ckpt.ema, ckpt.meta.get("ema_updates", 0))
        self.best_val = ckpt.meta.get("best_val")
        step = int(ckpt.meta["step"])
        if self.task.step_count() != step:
            raise PrediffError(f"cannot resume from {path}: optimizer step {self.task.step_count()} != {step}")
        self._truncate_metrics(step)
        self._last_saved_step = step
        return step

    def fit(self) -> TrainingResult:
        total = self.section.steps
        start = self.task.step_count()
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_resolved_config(self.config, self.run_dir)
        self.listener.on_start(start, total)
        previous = self._install_signal_handlers()
        last_record: dict = {}
        last_ckpt: Optional[Path] = None
        status = "finished"
        if self._last_saved_step is None and (self.run_dir / "last.ckpt").exists():
            raise PrediffError(f"{self.run_dir} already holds a training run (last.ckpt); continue it with --resume "
                               "or choose another --run-dir")
        t_window, steps_window = time.perf_counter(), 0
        step = start
        try:
            while step < total and self._stop_signal is None:
                batches = [self.train_data.batch(step * self.accum_steps + k) for k in range(self.accum_steps)]
                rng = np.random.default_rng([self.config.seed, step, self.rank])
                self.task.set_train(True)
                metrics = self.task.optimizer_step(step, batches, rng)
                if self.ema is not None:
                    self.ema.update()
                step += 1
                steps_window += 1
                now = time.perf_counter()
                epoch = (step * self.accum_steps) / max(self.train_data.batches_per_epoch, 1)
                record = {"step": step, "epoch": round(epoch, 4), **{k: _clean(v) for k, v in metrics.items()}}
                record["it_s"] = round(steps_window / max(now - t_window, 1e-9), 4)
                last_record = record
                if step % self.section.log_every == 0 or step == total:
                    self._log(record)
                    t_window, steps_window = now, 0
                self.listener.on_step(record)
                if self.val_data is not None and (step % self.section.val_every == 0 or step == total):
                    self._validate(step)
                if step % self.section.ckpt_every == 0 or step == total:
                    last_ckpt = self._save_last(step)
            if step < total:
                status = "interrupted"
                if self._last_saved_step != step:
                    last_ckpt = self._save_last(step)
        finally:
            self._restore_signal_handlers(previous)
        if self.world_size > 1:
            self._write_rank_digest()
        result = TrainingResult(status=status, step=self.task.step_count(), last_checkpoint=last_ckpt,
                                best_checkpoint=self.run_dir / "best.ckpt" if (self.run_dir / "best.ckpt").exists()
                                else None, last_metrics=last_record, best_val=self.best_val)
        self.listener.on_end(result)
        return result

    # ------------------------------------------------------------------------------------------------------------
    def _validate(self, step: int) -> None:
        self.task.set_train(False)
        sums: Dict[str, float] = {}
        count = 0
        for i, batch in enumerate(self.val_data()):
            rng = np.random.default_rng([self.config.seed, 1_000_003, i])  # same draws at every validation
            for key, value in self.task.validation_metrics(batch, rng).items():
                sums[key] = sums.get(key, 0.0) + float(value)
            count += 1
        if count == 0:
            return
        record = {"step": step, **{key: value / count for key, value in sums.items()}}
        self._log(record)
        self.listener.on_validation(record)
        value = record.get(self.task.monitor)
        if value is not None and math.isfinite(value) and (self.best_val is None or value < self.best_val):
            self.best_val = value
            if self.is_main:
                path = save_checkpoint(self.run_dir / "best.ckpt", self._checkpoint(step))
                self.listener.on_checkpoint(path, "best")

    def _write_rank_digest(self) -> None:
        """Data parallel: every rank records a digest of its final weights in ranks/rank-<r>.json, so that
        replicas that drifted apart (gradients not averaged) are visible rather than silently saved by rank 0."""
        digest = hashlib.sha256()
        for name, value in sorted(net_weights(self.task.net).items()):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        folder = self.run_dir / "ranks"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".rank-{self.rank}.json.tmp"
        tmp.write_text(json.dumps({"rank": self.rank, "world_size": self.world_size, "step": self.task.step_count(),
                                   "weights_sha256": digest.hexdigest()}) + "\n")
        os.replace(tmp, folder / f"rank-{self.rank}.json")

    def _checkpoint(self, step: int) -> Checkpoint:
        meta = {**self.task.extra_meta, "step": step, "rng": {"seed": self.config.seed, "step": step}, "best_val": self.best_val,
                "trainer": to_plain(self.section), "accum_steps": self.accum_steps, "world_size": self.world_size}
        ema = {}
        if self.ema is not None:
            ema = self.ema.state()
            meta["ema_updates"] = int(self.ema.num_updates.asnumpy())
        return Checkpoint(component=self.task.component, model_kwargs=self.task.model_kwargs,
                          config=to_plain(self.config), model=net_weights(self.task.net), ema=ema,
                          optim=self.task.state(), aux=self.task.aux_state(), meta=meta)

    def _save_last(self, step: int) -> Optional[Path]:
        if not self.is_main:
            return None
        path = self.run_dir / "last.ckpt"
        ckpt = self._checkpoint(step)
        previous = self._last_saved_step
        if path.exists() and previous is not None and previous != step:
            if self.section.keep_ckpts > 0:
                os.replace(path, self.run_dir / f"last-{previous}.ckpt")
            rotated = sorted(self.run_dir.glob("last-*.ckpt"), key=_step_of)
            for old in rotated[:max(len(rotated) - self.section.keep_ckpts, 0)]:
                old.unlink()
        save_checkpoint(path, ckpt)
        self._last_saved_step = step
        self.listener.on_checkpoint(path, "last")
        return path

    def _log(self, record: dict) -> None:
        if not self.is_main:
            return
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")

    def _truncate_metrics(self, step: int) -> None:
        """Drop records logged after the checkpoint being resumed (they will be logged again)."""
        if not self.is_main or not self.metrics_path.exists():
            return
        kept = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        tmp = self.metrics_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.metrics_path)

    def _install_signal_handlers(self):
        def handler(signum, _frame):
            self._stop_signal = signum

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (e.g. inside some test runners)
                pass
        return previous

    @staticmethod
    def _restore_signal_handlers(previous) -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _step_of(path: Path) -> int:
    try:
        return int(path.stem.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _clean(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
