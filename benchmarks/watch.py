"""Cycle latency of a running nowcast (`prediff watch`): frames dropped into a folder one by one, as a radar feed
delivers them, and the time from the frame completing a context to that cycle's products being written.

    python -m benchmarks.watch [--model demo|sevirlr-random] [--cycles 3] [--poll 1] [--set KEY=VALUE ...]

`demo` is the bundled demo model; `sevirlr-random` is the paper-size networks (the `sevirlr` preset: 136.8 M-parameter
UNet, 84.5 M VAE, alignment network) with random weights — a cycle's cost does not depend on the weights — and the
preset's forecast settings. The watch runs in a thread of this process exactly as `prediff watch DIR` runs it
(`run_watch`, polling every `--poll` seconds); 7 frames make the first context, each further frame a new cycle.
The first cycle includes loading and compiling the networks (what `--once` from cron pays every time); the later
("warm") cycles are what a watch left running delivers. Each cycle's record is the one `prediff watch` writes to
its log (`latency_from_arrival_s`: the newest frame's arrival to the products written; `forecast_wall_s`,
`sampling_s`), with the peak RSS of the process at the end. Prints one JSON document.
"""
from __future__ import annotations

import argparse
import datetime as dt

from benchmarks.measure import emit, isolated

START = dt.datetime(2019, 7, 1, 18, 0)


def _frame(k: int, size: int):
    """A moving Gaussian storm, digital VIL (uint8 0–255)."""
    import numpy as np

    yy, xx = np.mgrid[0:size, 0:size]
    return (180 * np.exp(-((yy - 30 - 2 * k) ** 2 + (xx - 25 - 2 * k) ** 2) / 60.0)).astype(np.uint8)


def _drop(folder, k: int, size: int):
    """Frame k (valid START + 10·k minutes) as a one-frame HDF5 file, written under a hidden name and renamed in."""
    import os

    import h5py

    when = START + dt.timedelta(minutes=10 * k)
    path = folder / f"radar_{when:%Y%m%d%H%M}.h5"
    tmp = folder / f".{path.name}.part"
    with h5py.File(tmp, "w") as h5:
        h5["vil"] = _frame(k, size)[None]
        h5["vil"].attrs["time_utc"] = f"{when:%Y-%m-%dT%H:%M:%SZ}"
    os.replace(tmp, path)


def _model(name: str):
    from prediff.pipelines.model import Model, load_model

    if name != "sevirlr-random":
        return load_model(name)
    import prediff_models as models
    from prediff.config import load_config

    cfg = load_config("sevirlr")
    nets = {c: models.build(c, cfg.model_kwargs(c)) for c in ("vae", "unet", "align")}
    return Model.from_networks(cfg, nets["vae"], nets["unet"], nets["align"])


def watch_cycles(model: str, cycles: int, poll: float, sets: list) -> dict:
    """Run a watch on a fresh folder for `cycles` cycles; returns the forecast records of its log."""
    import tempfile
    import threading
    import time
    from pathlib import Path

    from prediff.io.json_lines import read_json_lines
    from prediff.pipelines.watch_run import run_watch

    t0 = time.perf_counter()
    loaded = _model(model)
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        radar, out = Path(tmp) / "radar", Path(tmp) / "nowcasts"
        radar.mkdir()
        size = 128
        context = 7
        for k in range(context - 1):
            _drop(radar, k, size)
        stop, lines, result, errors = threading.Event(), [], {}, []

        def work():
            try:
                result.update(run_watch(radar, out, keep=2, poll=poll, settle=0.5, model=loaded, sets=sets,
                                        notify=lines.append, stop=stop))
            except BaseException as exc:  # reported below, not lost in the thread
                import traceback
                errors.append(repr(exc) + " " + traceback.format_exc()[-1500:].replace("\n", " | "))

        thread = threading.Thread(target=work)
        thread.start()
        try:
            for c in range(cycles):
                _drop(radar, context - 1 + c, size)
                while thread.is_alive():
                    done = [r for r in read_json_lines(out / "watch.log.jsonl")
                            if r["event"] in ("forecast", "failed")] if (out / "watch.log.jsonl").exists() else []
                    if len(done) > c:
                        break
                    time.sleep(0.05)
        finally:
            stop.set()
            thread.join()
        if errors:
            raise RuntimeError(errors[0])
        records = list(read_json_lines(out / "watch.log.jsonl"))
    keys = ("cycle", "warm", "latency_from_arrival_s", "forecast_wall_s", "sampling_s", "members", "sampler",
            "network_evaluations")
    forecasts = [{k: r.get(k) for k in keys} for r in records if r["event"] == "forecast"]
    failed = [r for r in records if r["event"] == "failed"]
    warm = [r["latency_from_arrival_s"] for r in forecasts if r["warm"]]
    return {"model": model, "poll_s": poll, "sets": sets, "model_load_s": round(load_s, 2), "cycles": forecasts,
            "failed": failed, "warm_latency_s": (round(min(warm), 2), round(max(warm), 2)) if warm else None}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="a model name or folder, or sevirlr-random")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    emit(isolated("benchmarks.watch", "watch_cycles", timeout=4 * 3600, model=args.model, cycles=args.cycles,
                  poll=args.poll, sets=args.sets))


if __name__ == "__main__":
    main()
