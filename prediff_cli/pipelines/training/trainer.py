"""The trainer core shared by `train-vae`, `train-diffusion` and `train-align`.

Reproducibility by construction: the data position and every random draw of an optimizer step are pure
functions of (seed, step) — micro-batch `k` of step `s` is global batch `s·accum + k` of the seeded epoch order,
its noise comes from `numpy.random.default_rng([seed, s, rank])`, and its dropout masks are hashed from a key
drawn from (seed, s, rank, k) (`train_step.StepDropout`; MindSpore's own dropout stream cannot be rewound). A
resumed run therefore sees exactly the batches, noise and dropout masks the uninterrupted run would have seen; the
checkpoint's "RNG state" is that (seed, step) pair.

Outputs in the run directory: `config.yaml` (resolved config), `metrics.jsonl` (one JSON object per logged
step and per validation, each with `step`), `last.ckpt` (every `ckpt_every` steps, at the end and on
SIGINT/SIGTERM; older copies rotated to `last-<step>.ckpt`), `best.ckpt` (lowest validation loss).
`--resume` continues from `last.ckpt`, or from the newest loadable `last-<step>.ckpt` when `last.ckpt` is missing
or unreadable.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Protocol

import numpy as np

from prediff.config import Config, TrainConfig, to_plain, write_resolved_config
from prediff.errors import InputError, PrediffError
from prediff.io.atomic import atomic_path, atomic_write_text, commit, fsync_dir
from prediff.io.checkpoint import Checkpoint, load_checkpoint, net_weights, save_checkpoint, weights_sha256
from prediff_models.kernels.stash import release_stash

from .ema import EMA
from .task import TrainingTask


class BatchSource(Protocol):
    """Random access to training micro-batches: `batch(i)` is global micro-batch `i` (epoch-major): NTHWC pixels,
    or for the latent trainers with a latent cache an `encoded_batches.EncodedBatch`."""

    batches_per_epoch: int

    def batch(self, index: int): ...


class TrainingListener:
    """Receives progress events (the CLI turns them into a live display). All methods are optional."""

    def on_resume(self, path: Path, step: int, skipped: List[str]) -> None:
        """The run continues from checkpoint `path` at `step`; `skipped` says why newer files were not used."""

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
    resumed_from: Optional[Path] = None  # the checkpoint a resumed run continued from


LAST = "last.ckpt"
STAGED = ".last.staged.ckpt"  # the next last.ckpt while it is being written (never read by --resume)
_ROTATED = re.compile(r"^last-(\d+)\.ckpt$")


@dataclass
class ResumePoint:
    """The checkpoint a resumed run continues from; `skipped`: one reason per newer file that was not usable."""

    path: Path
    ckpt: Checkpoint
    skipped: List[str] = field(default_factory=list)

    @property
    def step(self) -> int:
        return int(self.ckpt.meta["step"])


def rotated_checkpoints(run_dir: Path) -> List[Path]:
    """`last-<step>.ckpt` files in `run_dir`, oldest step first."""
    found = [p for p in Path(run_dir).glob("last-*.ckpt") if _ROTATED.match(p.name)]
    return sorted(found, key=_step_of)


def find_resume_point(run_dir: Path, component: str) -> ResumePoint:
    """`run_dir/last.ckpt` if it loads, else the newest `last-<step>.ckpt` that does.

    A file that loads but holds another component (or no config) is an error, not a reason to fall back: the
    directory belongs to another kind of run."""
    run_dir = Path(run_dir)
    candidates = [run_dir / LAST] + rotated_checkpoints(run_dir)[::-1]
    if not any(p.is_file() for p in candidates):
        raise PrediffError(f"cannot resume: {run_dir} holds no {LAST} (start without --resume)")
    skipped: List[str] = []
    for path in candidates:
        if not path.is_file():
            skipped.append(f"{path.name} is missing")
            continue
        try:
            ckpt = load_checkpoint(path)
        except InputError as exc:  # unreadable, truncated, not a prediff checkpoint
            skipped.append(str(exc))
            continue
        if ckpt.component != component:
            raise InputError(f"{path} holds a {ckpt.component} checkpoint, but a {component} run is being resumed")
        if ckpt.config is None or "step" not in ckpt.meta:
            raise InputError(f"{path} carries no training config or step; it cannot be resumed")
        return ResumePoint(path, ckpt, skipped)
    raise PrediffError(f"cannot resume: no loadable checkpoint in {run_dir} ({'; '.join(skipped)})")


class Trainer:
    def __init__(self, task: TrainingTask, *, run_dir: Path, config: Config, section: TrainConfig,
                 train_data: BatchSource, val_data: Optional[Callable[[], Iterable[np.ndarray]]] = None,
                 accum_steps: int = 1, rank: int = 0, world_size: int = 1,
                 listener: Optional[TrainingListener] = None, extra_meta: Optional[Dict[str, object]] = None):
        """`extra_meta`: provenance copied into every checkpoint's meta (the latent trainers: their frozen VAE)."""
        self.task = task
        self.run_dir = Path(run_dir)
        self.config = config
        self.section = section
        self.train_data = train_data
        self.val_data = val_data
        self.accum_steps = int(accum_steps)
        self.rank, self.world_size = rank, world_size
        self.listener = listener or TrainingListener()
        self.extra_meta = dict(extra_meta or {})
        self.ema = EMA(task.net, section.ema_decay) if section.ema_decay > 0 else None
        self.best_val: Optional[float] = None
        self._stop_signal: Optional[int] = None
        self._last_saved_step: Optional[int] = None  # step of the newest complete checkpoint (the resume point)
        self._last_file_step: Optional[int] = None  # step held by run_dir/last.ckpt (None: absent or unusable)
        self._resumed_step: Optional[int] = None
        self.resumed_from: Optional[Path] = None
        self.is_main = rank == 0

    # ------------------------------------------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def resume(self, point: Optional[ResumePoint] = None) -> int:
        """Restore weights, optimizer, EMA and counters from `point` (default: `find_resume_point`); returns the
        step reached. Nothing in the run directory is written here: `fit` does that, after every check."""
        if point is None:
            point = find_resume_point(self.run_dir, self.task.component)
        path, ckpt = point.path, point.ckpt
        from prediff.io.checkpoint import load_weights

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
        step = point.step
        if self.task.step_count() != step:
            raise PrediffError(f"cannot resume from {path}: optimizer step {self.task.step_count()} != {step}")
        self._last_saved_step = self._resumed_step = step
        # a fallback means last.ckpt is missing or broken: it must not be rotated into last-<step>.ckpt
        self._last_file_step = step if path.name == LAST else None
        self.resumed_from = path
        hook = getattr(self.listener, "on_resume", None)
        if hook is not None:
            hook(path, step, list(point.skipped))
        return step

    def fit(self) -> TrainingResult:
        """Train from the step reached to `section.steps`, or until SIGINT/SIGTERM (then `last.ckpt` holds the step
        reached), logging, validating and checkpointing at the section's cadence."""
        total, start = self.section.steps, self.task.step_count()
        self._check_before_writing(start, total)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_resolved_config(self.config, self.run_dir)
            if self._resumed_step is not None:
                self._truncate_metrics(self._resumed_step)
        self.listener.on_start(start, total)
        previous = self._install_signal_handlers()
        try:
            step, last_record, last_ckpt = self._train_until(start, total)
            if step < total and self._last_saved_step != step:  # stopped by a signal between two saves
                last_ckpt = self._save_last(step)
        finally:
            self._restore_signal_handlers(previous)
            release_stash()  # outputs kept for block gradients (`keep_linear_outputs`): every step's loss was read
        if self.world_size > 1:
            self._write_rank_digest()
        best = self.run_dir / "best.ckpt"
        result = TrainingResult(status="finished" if step >= total else "interrupted", step=self.task.step_count(),
                                last_checkpoint=last_ckpt, best_checkpoint=best if best.exists() else None,
                                last_metrics=last_record, best_val=self.best_val, resumed_from=self.resumed_from)
        self.listener.on_end(result)
        return result

    def _check_before_writing(self, start: int, total: int) -> None:
        """Every check before the first write: a refused run leaves the directory as it was."""
        if self._resumed_step is None:
            existing = [p.name for p in [self.run_dir / LAST] + rotated_checkpoints(self.run_dir) if p.exists()]
            if existing:
                raise PrediffError(f"{self.run_dir} already holds a training run ({existing[0]}); continue it with "
                                   "--resume or choose another --run-dir")
        elif total <= start:
            raise PrediffError(f"run {self.run_dir} is at step {start}; {total} steps do not go beyond it: "
                               "pass a larger --steps to continue it")

    def _train_until(self, start: int, total: int):
        """Optimizer steps `start`..`total` - 1, stopping early after a signal. Returns the step reached, its record
        (the last `metrics.jsonl`-style row, {} if no step ran) and the last `last.ckpt` written (or None)."""
        last_record: dict = {}
        last_ckpt: Optional[Path] = None
        t_window, steps_window = time.perf_counter(), 0  # it/s over the steps since the last logged one
        step = start
        while step < total and self._stop_signal is None:
            metrics = self._optimizer_step(step)
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
        return step, last_record, last_ckpt

    def _optimizer_step(self, step: int) -> Dict[str, float]:
        """Optimizer step `step` (0-based): its micro-batches, its noise generator and its dropout keys are functions
        of (seed, step, rank) only, which is what makes a resumed run repeat the uninterrupted one."""
        batches = [self.train_data.batch(step * self.accum_steps + k) for k in range(self.accum_steps)]
        rng = np.random.default_rng([self.config.seed, step, self.rank])
        if self.task.dropout is not None:
            self.task.dropout.begin_step(self.config.seed, step, self.rank)
        self.task.set_train(True)
        metrics = self.task.optimizer_step(step, batches, rng)
        if self.ema is not None:
            self.ema.update()
        return metrics

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
        digest = weights_sha256(net_weights(self.task.net))
        atomic_write_text(self.run_dir / "ranks" / f"rank-{self.rank}.json",
                          json.dumps({"rank": self.rank, "world_size": self.world_size,
                                      "step": self.task.step_count(), "weights_sha256": digest}) + "\n")

    def _checkpoint(self, step: int) -> Checkpoint:
        meta = {**self.extra_meta, "step": step, "rng": {"seed": self.config.seed, "step": step},
                "best_val": self.best_val, "trainer": to_plain(self.section), "accum_steps": self.accum_steps,
                "world_size": self.world_size}
        ema = {}
        if self.ema is not None:
            ema = self.ema.state(live=True)
            meta["ema_updates"] = int(self.ema.num_updates.asnumpy())
        return Checkpoint(component=self.task.component, model_kwargs=self.task.model_kwargs,
                          config=to_plain(self.config), model=net_weights(self.task.net, live=True), ema=ema,
                          optim=self.task.state(live=True), aux=self.task.aux_state(live=True), meta=meta)

    def _save_last(self, step: int) -> Optional[Path]:
        """Write `last.ckpt` for `step`, keeping the previous one as `last-<previous>.ckpt`.

        The order keeps a complete, resumable `last.ckpt` on disk at every instant, whenever the process dies:
        1. the new checkpoint is written and fsync'ed under STAGED, a name `--resume` ignores (last.ckpt: old);
        2. the old last.ckpt gets a second name, last-<previous>.ckpt (hard link, else a copy; made under a
           temporary name and renamed, so that name too is complete or absent);
        3. STAGED is renamed over last.ckpt (atomic), then the folder is fsync'ed;
        4. only then are surplus rotated copies deleted.
        (Renaming old → last-<previous> before step 3 would leave a moment with no last.ckpt; `--resume` would
        then fall back to last-<previous>, losing nothing complete, but the link avoids even that.)
        A kill during 1–3 leaves STAGED behind; the next save overwrites it.
        """
        if not self.is_main:
            return None
        last = self.run_dir / LAST
        staged = save_checkpoint(self.run_dir / STAGED, self._checkpoint(step))
        previous = self._last_file_step
        if previous is not None and previous != step and self.section.keep_ckpts > 0 and last.is_file():
            _second_name(last, self.run_dir / f"last-{previous}.ckpt")
        commit(staged, last)
        self._last_saved_step = self._last_file_step = step
        self._prune_rotated(step)
        self.listener.on_checkpoint(last, "last")
        return last

    def _prune_rotated(self, step: int) -> None:
        """Keep the `keep_ckpts` newest rotated copies older than `step`. Copies at or beyond `step` are from before
        a resume that fell back past them (they did not load) and would mislead a later fallback."""
        rotated = rotated_checkpoints(self.run_dir)
        older = [p for p in rotated if _step_of(p) < step]
        doomed = [p for p in rotated if _step_of(p) >= step] + older[:max(len(older) - self.section.keep_ckpts, 0)]
        for old in doomed:
            old.unlink()
        if doomed:
            fsync_dir(self.run_dir)

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
        atomic_write_text(self.metrics_path, "".join(line + "\n" for line in kept))

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
    match = _ROTATED.match(Path(path).name)
    return int(match.group(1)) if match else -1


def _second_name(src: Path, dst: Path) -> None:
    """Make `dst` a complete copy of `src`: a hard link where the file system has them, else a byte copy; either
    is made under a temporary name and renamed, so `dst` is never partial."""
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:  # no hard links here (some network and FUSE file systems)
            shutil.copyfile(src, tmp)


def _clean(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
