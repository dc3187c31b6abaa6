"""`prediff watch` as one plain function: a folder that receives radar frames in, a forecast per new complete
context out, for as long as it runs (or once, for cron).

Each cycle: scan the folder (`data.frame_arrivals`: new files read, files being written waited for, bad files
refused once); take the newest complete context (the model's context length of frames 10 minutes apart, 5- and
2.5-minute data thinned as a folder input is); when it is newer than the newest cycle done, forecast it with
`run_sample` (the same forecast as `prediff sample --input` on those files) into a hidden folder, rename that to
the cycle's name, point `latest` at it and prune to the last `keep` (`io.cycle_folders`), and log the cycle's
latency as one JSON line in `OUT/watch.log.jsonl`. The model is loaded and its graphs compiled once, by the
first cycle; later cycles reuse them.

Only the newest complete context is forecast: after a pause the cycles missed are not caught up (a nowcast of
an hour ago is of no use). The cycles done are read from the output folder, so a restart forecasts nothing twice;
the refused files and cycles are kept in `OUT/.watch-state.json`. A cycle whose frames are refused (bad values,
another grid) is logged and not tried again until one of its files changes. An interrupt (Ctrl-C, and SIGTERM
where the command turns it into one) ends the watch after removing the cycle in progress.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from prediff import __version__
from prediff.data.frame_arrivals import Context, FrameArrivals
from prediff.errors import InputError, PrediffError
from prediff.io.atomic import atomic_write_text
from prediff.io.cycle_folders import (LATEST, check_latest, cycle_name, done_cycles, exclusive,
                                      point_latest, prune, publish, remove_leftovers, staging_dir)
from prediff.io.json_lines import append_json_line
from prediff.io.output_dir import check_output_dir

from .forecast import model_label
from .model import Checkpoints, Model, load_model
from .sample_run import run_sample
from .watch_state import STATE_NAME, WatchState

LOG_NAME = "watch.log.jsonl"
#: records kept in the summary `run_watch` returns, per kind (the log keeps them all)
SUMMARY_ITEMS = 1000


def _iso(seconds: float) -> str:
    """A POSIX time as ISO 8601 UTC with a Z, to the millisecond."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _epoch(time_utc: dt.datetime) -> float:
    return time_utc.replace(tzinfo=dt.timezone.utc).timestamp()


def _check_out(out: Path, folder: Path) -> None:
    """`out` must be new, empty, or a folder this command wrote (it holds the watch log): the command creates,
    replaces (`latest`) and deletes (pruning) entries there, which must never touch a user's other files."""
    check_output_dir(out, (), what="forecasts")
    if out.resolve() == folder.resolve():
        raise InputError(f"--out {out} is the watched folder; choose another folder for the forecasts")
    if out.is_dir() and not (out / LOG_NAME).is_file() and any(p.name != ".watch.lock" for p in out.iterdir()):
        raise InputError(f"--out {out} holds other files; choose a new or empty folder, or one that `prediff watch` "
                         "wrote before (it holds watch.log.jsonl)")


def _repoint_latest(out: Path) -> None:
    """After an interrupt between a cycle's rename and its link, `latest` may still name the cycle before (or a
    pruned one): point it at the newest cycle done."""
    done = done_cycles(out)
    if not done:
        return
    when, name = done[-1]
    link = out / LATEST
    if not link.is_symlink() or os.readlink(link) != name:
        point_latest(out, name, when)


class _Watch:
    """The state of one run of `run_watch`: the model, the folder being watched, the output folder, the log."""

    def __init__(self, folder: Path, out: Path, loaded: Model, arrivals: FrameArrivals, state: WatchState, *,
                 keep: int, forecast: Dict[str, Any], notify: Optional[Callable[[str], None]]):
        self.folder, self.out, self.loaded, self.arrivals, self.state = folder, out, loaded, arrivals, state
        self.keep, self.forecast, self._notify = keep, forecast, notify
        self.in_len = int(loaded.config.unet.input_shape[0])
        self._said: set = set()
        self.summary: Dict[str, Any] = {"cycles": [], "skipped": [], "failed": [], "stopped": False}

    def say(self, line: str, once: bool = False) -> None:
        """Tell `line`; with `once`, only the first time (the model's name, a file being waited for)."""
        if self._notify is None or (once and line in self._said):
            return
        if once:
            if len(self._said) > SUMMARY_ITEMS:  # bounded over a long run (a line may then be told again)
                self._said.clear()
            self._said.add(line)
        self._notify(line)

    def note(self, kind: str, item: dict) -> None:
        """Add to the summary's list `kind`, keeping the newest `SUMMARY_ITEMS` (a watch may run for months)."""
        items = self.summary[kind]
        items.append(item)
        del items[:-SUMMARY_ITEMS]

    def log(self, event: str, **fields) -> None:
        append_json_line(self.out / LOG_NAME, {"event": event, "time": _iso(time.time()), **fields})

    def look(self) -> List[Path]:
        """Scan the folder; log and tell the files refused; returns the files still pending."""
        before = dict(self.arrivals.refused)
        scan = self.arrivals.scan()
        for path, why in scan.refused:
            self.log("skipped", file=path.name, reason=why)
            self.say(f"skipped {path.name}: {why}")
            self.note("skipped", {"file": path.name, "reason": why})
        if self.arrivals.refused != before:
            self.state.refused = dict(self.arrivals.refused)
            self.state.save(self.out)
        for path in scan.pending:
            self.say(f"waiting for {path.name} (still being written, or not yet readable)", once=True)
        return scan.pending

    def due(self) -> Optional[Context]:
        """The newest complete context, when it is newer than the newest cycle done and not refused before."""
        context = self.arrivals.context(self.in_len)
        if context is None:
            return None
        done = done_cycles(self.out)
        if done and done[-1][0] >= context.times[-1]:
            return None
        if self.state.is_failed(cycle_name(context.times[-1]), context.signature):
            return None
        return context

    def cycle(self, context: Context) -> Optional[dict]:
        """Forecast `context` into its cycle folder; returns the latency record logged (None when refused)."""
        reference = context.times[-1]
        name = cycle_name(reference)
        staging = staging_dir(self.out, name)
        detected = time.time()
        warm = self.loaded.forecaster_cache is not None
        self.say(f"{name}: forecasting from {len(context.times)} frames ending {reference:%Y-%m-%d %H:%M} UTC"
                 + ("" if warm else " (the first forecast compiles the networks)"))
        start = time.perf_counter()
        try:
            if staging.exists():
                shutil.rmtree(staging)
            report = run_sample(context.files, staging, model=self.loaded, notify=lambda line: self.say(line, True),
                                **self.forecast)
            if dt.datetime.fromisoformat(report["reference_time"]) != reference:
                self.say(f"{name}: the frames changed while being read; trying again")
                return None
            final = self.out / name
            report.update({k: str(final / Path(report[k]).name) for k in ("netcdf", "gif", "png")})
            atomic_write_text(staging / "run.json", json.dumps(report, indent=2, sort_keys=True))
            publish(staging, self.out, name)
        except InputError as exc:
            self.state.failed[name] = (context.signature, str(exc))
            self.state.save(self.out)
            self.log("failed", cycle=name, reason=str(exc), files=[f.name for f in context.files])
            self.say(f"{name}: refused: {exc}")
            self.note("failed", {"cycle": name, "reason": str(exc)})
            return None
        except (PrediffError, OSError, MemoryError) as exc:
            self.log("failed", cycle=name, reason=f"{type(exc).__name__}: {exc}", fatal=True)
            raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        written = time.time()
        wall = time.perf_counter() - start
        latest = point_latest(self.out, name, reference)
        pruned = prune(self.out, self.keep)
        newest_file = self.arrivals.frames[reference]
        record = {
            "cycle": name, "valid_time": reference.isoformat() + "Z", "newest_frame_file": newest_file.name,
            "frame_mtime": _iso(os.stat(newest_file).st_mtime) if newest_file.exists() else None,
            "last_arrival": _iso(context.arrived), "detected": _iso(detected), "written": _iso(written),
            "latency_from_valid_time_s": round(written - _epoch(reference), 3),
            "latency_from_arrival_s": round(written - context.arrived, 3),
            "forecast_wall_s": round(wall, 3), "sampling_s": report["seconds"], "warm": warm,
            "members": report["members"], "sampler": report["sampler"],
            "network_evaluations": report["network_evaluations"], "files": [f.name for f in context.files],
            "latest": latest, "pruned": pruned,
        }
        self.log("forecast", **record)
        self.say(f"{name}: wrote {self.out / name} ({report['members']} members, {report['sampler']}-"
                 f"{report['network_evaluations']}, {wall:.1f} s; {record['latency_from_arrival_s']:.1f} s after the "
                 "last frame arrived)")
        self.note("cycles", record)
        return record


def run_watch(folder: Path, out: Path, *, keep: int = 24, poll: float = 10.0, once: bool = False,
              settle: float = 30.0, model: Union[str, Model] = "demo", config: Optional[str] = None,
              sets: Sequence[str] = (), values: Optional[Mapping[str, Any]] = None,
              checkpoints: Checkpoints = Checkpoints(), allow_mismatch: bool = False, variable: str = "vil",
              grid: Optional[str] = None, notify: Optional[Callable[[str], None]] = None,
              stop: Optional[threading.Event] = None, command: str = "prediff watch") -> dict:
    """Forecast each new complete context of the radar files arriving in `folder` into a cycle folder of `out`.

    Parameters
    ----------
    folder : Path
        The folder receiving one radar file per time (HDF5 or CF NetCDF, as a folder `--input` is read; hidden
        files, such as transfers in progress, are ignored).
    out : Path
        The output folder: new, empty, or written by an earlier run (it holds `watch.log.jsonl`).
    keep : int
        Cycle folders kept (the newest); 0 keeps all.
    poll : float
        Seconds between two looks at `folder`.
    once : bool
        Look once (after waiting up to `settle` seconds for files still being written), forecast the newest
        complete context when it is new, and return: what a cron job runs.
    settle : float
        A file that does not read is waited for while it changes or for `settle` seconds after its last
        modification, then refused.
    model, config, sets, values, checkpoints, allow_mismatch, variable, grid
        As for `run_sample`; `model` may be a `Model` already loaded.
    notify : callable, optional
        Receives the lines to show (one per cycle, skipped file and refusal).
    stop : threading.Event, optional
        Set it to end the watch after the cycle in progress (for a watch run in a thread).
    command : str
        The command line recorded in each forecast file's history.

    Returns
    -------
    dict
        ``cycles`` (the latency record of each forecast written), ``skipped`` (files refused), ``failed``
        (cycles refused), ``stopped`` (True after an interrupt).
    """
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise InputError(f"the folder to watch, {folder}, " + ("is not a folder" if folder.exists() else
                                                               "does not exist"))
    if not poll > 0 or not settle >= 0 or keep < 0:
        raise InputError(f"--poll must be > 0, --settle >= 0 and --keep >= 0 (got {poll:g}, {settle:g}, {keep})")
    _check_out(out, folder)
    out.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()
    with exclusive(out):
        check_latest(out)
        remove_leftovers(out)
        _repoint_latest(out)
        state, problem = WatchState.load(out)
        if problem:
            (out / STATE_NAME).replace(out / (STATE_NAME + ".unreadable"))
        watch = None
        try:
            loaded = model if isinstance(model, Model) else load_model(
                model, vae=checkpoints.vae, unet=checkpoints.unet, align=checkpoints.align,
                allow_mismatch=allow_mismatch)
            forecast = dict(config=config, sets=list(sets), values=dict(values or {}), variable=variable, grid=grid,
                            command=command)
            arrivals = FrameArrivals(folder, variable, settle, state.refused)
            watch = _Watch(folder, out, loaded, arrivals, state, keep=keep, forecast=forecast, notify=notify)
            if problem:
                watch.say(problem)
            watch.log("start", folder=str(folder), model=model_label(loaded), context_frames=watch.in_len,
                      poll_s=poll, settle_s=settle, keep=keep, once=once, pid=os.getpid(), version=__version__)
            watch.say(f"watching {folder} for {watch.in_len} frames 10 minutes apart; forecasts in {out}"
                      + ("" if once else f" (every {poll:g} s; Ctrl-C stops)"))
            _loop(watch, poll=poll, once=once, settle=settle, stop=stop)
        except KeyboardInterrupt:
            if watch is None:
                return {"cycles": [], "skipped": [], "failed": [], "stopped": True}
            watch.summary["stopped"] = True
            watch.log("stop", reason="interrupted")
            watch.say("stopped (interrupted); no cycle was left half-written")
            return watch.summary
        watch.summary["stopped"] = stop.is_set()
        watch.log("stop", reason="stopped" if stop.is_set() else "once")
        if stop.is_set():
            watch.say("stopped")
        return watch.summary


def _loop(watch: _Watch, *, poll: float, once: bool, settle: float, stop: threading.Event) -> None:
    began = time.monotonic()
    while not stop.is_set():
        pending = watch.look()
        if once and pending and time.monotonic() - began < settle + poll:
            stop.wait(min(poll, 1.0))  # a cron run waits a little for a file being written, not a whole poll
            continue
        context = watch.due()
        if context is not None:
            watch.cycle(context)
            if not once:
                continue  # look again at once: frames may have arrived during the forecast
        if once or stop.wait(poll):
            return
