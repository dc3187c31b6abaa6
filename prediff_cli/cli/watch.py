"""`prediff watch`: a running nowcast — a forecast for each new complete context of the frames arriving in a folder.

A command of its own (not a `sample` option): it runs until stopped, writes one folder per cycle with a `latest`
link, and has its own options (--keep, --poll, --once, --settle); the forecast options are `sample`'s.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Iterator, Optional

import typer
from typing_extensions import Annotated

from prediff.cli.options import DEFAULT_MODEL, JsonOpt, forecast_options, model_default
from prediff.cli.reporting import echo, emit_json, guarded, json_output
from prediff.cli.sample import parse_thresholds
from prediff.config import load_config
from prediff.io.grid import GRID_SPEC_HELP

#: the default model's exceedance thresholds (its config's), for the help
_THRESHOLDS = load_config(DEFAULT_MODEL).sample.thresholds


@contextlib.contextmanager
def _stopping_on_signals(stop: threading.Event) -> Iterator[None]:
    """While the watch runs, Ctrl-C (SIGINT) and SIGTERM (a service manager stopping it, `kill`) set `stop` and
    interrupt the work in progress: the cycle being forecast is removed and the command exits 0. Setting `stop`
    as well makes the watch end at its next step even where the interrupt lands in library code that swallows it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        stop.set()
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    @app.command("watch")
    @guarded(oom_hint="try fewer --samples or members per call (--set sample.member_batch=N)")
    @forecast_options(without=("overwrite",))
    def watch(
        ctx: typer.Context,
        folder: Annotated[Path, typer.Argument(
            metavar="DIR", help="Folder receiving one radar file per time: HDF5 or CF NetCDF, as `prediff sample "
            "--input DIR` reads them (hidden files, such as transfers in progress, are ignored).")],
        out: Annotated[Path, typer.Option(
            "--out", "-o", help="Output folder: one folder per cycle (named for its newest frame, like "
            "20190701T1910Z), a link 'latest' to the newest, and the log watch.log.jsonl. New, empty, or written "
            "by an earlier watch (it then resumes).")] = Path("nowcasts"),
        keep: Annotated[int, typer.Option("--keep", min=0, help="Cycles kept (the newest); 0 keeps all.")] = 24,
        poll: Annotated[float, typer.Option("--poll", min=0.01, metavar="SECONDS",
                                            help="Seconds between two looks at DIR.")] = 10.0,
        once: Annotated[bool, typer.Option("--once", help="Forecast the newest complete context if it is new, then "
                                           "exit (for cron).")] = False,
        settle: Annotated[float, typer.Option(
            "--settle", min=0.0, metavar="SECONDS", help="A file that cannot be read is waited for while it changes "
            "and for this many seconds after its last change (a transfer in progress), then skipped.")] = 30.0,
        variable: Annotated[str, typer.Option("--variable", metavar="NAME",
                                              help="Variable (NetCDF) or dataset (HDF5) holding the VIL.")] = "vil",
        grid: Annotated[Optional[str], typer.Option(
            "--grid", metavar="SPEC", help=f"Place the frames on the map (LAEA grid): {GRID_SPEC_HELP}. Replaces "
            "the files' own grid. (default: the files' grid mapping, else none)")] = None,
        thresholds: Annotated[Optional[str], typer.Option(
            "--thresholds", metavar="V1,V2,...", help="Digital VIL thresholds of the exceedance probabilities "
            f"(a pixel counts at >= threshold). {model_default(_THRESHOLDS)}")] = None,
        json_: JsonOpt = False,
        *, forecast: dict,
    ):
        """Forecast each new complete context of the frames arriving in DIR (a running nowcast; --once for cron)."""
        from prediff.cli.command_line import command_line
        from prediff.pipelines.watch_run import run_watch

        levels = parse_thresholds(thresholds)
        if levels is not None:
            forecast["values"]["sample.thresholds"] = levels
        forecast.pop("overwrite")
        stop = threading.Event()
        with json_output(json_), _stopping_on_signals(stop):
            summary = run_watch(folder, out, keep=keep, poll=poll, once=once, settle=settle, variable=variable,
                                grid=grid, notify=echo, stop=stop, command=command_line(ctx), **forecast)
        if json_:
            emit_json(summary)
