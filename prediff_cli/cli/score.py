"""`prediff score`: skill of a written forecast, or of the model over a whole split, against baselines."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text
from typing_extensions import Annotated

from prediff.cli.options import DataOpt, JsonOpt, forecast_options
from prediff.cli.progress import StepsDisplay
from prediff.cli.reporting import console, echo, emit_json, guarded, json_output
from prediff.errors import InputError


#: the splits `--split` offers (`pipelines.score_run.SPLITS`, not imported here: the pipelines load when a command
#: runs, not when the CLI starts)
Split = Enum("Split", {"test": "test", "val": "val"}, type=str)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _interval(interval) -> Text:
    """"0.310–0.391" (or "" where there is no interval)."""
    if not interval or None in interval:
        return Text("")
    return Text(f"{interval[0]:.3f}–{interval[1]:.3f}")


def _difference(entry) -> tuple:
    """("+0.0110 *", "[-0.020, +0.040]"): the difference, marked * when its interval excludes 0, and the
    interval."""
    if not entry:
        return "-", ""
    lo, hi = entry["interval"]
    return f"{entry['value']:+.4f}" + (" *" if entry["excludes_zero"] else "  "), Text(f"[{lo:+.3f}, {hi:+.3f}]")


def _pick(block: dict, path, kind=(int, float)):
    value = block
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, kind) else None


#: the summary rows of the table: label → path into a score block ("-" where a block lacks it)
SUMMARY_ROWS = (
    ("CSI-pool4 avg", ("csi_pool4", "avg")), ("CSI-pool16 avg", ("csi_pool16", "avg")),
    ("bias (freq.) avg", ("bias", "avg")),
    ("CRPS (fair)", ("crps", "pool1")), ("CRPS (standard)", ("crps_standard", "pool1")),
    ("MSE", ("mse",)), ("MAE", ("mae",)), ("SSIM", ("ssim",)), ("FVD", ("fvd",)),
)
#: rows that get a second row with their interval: label → path into the "intervals" block
INTERVAL_ROWS = {"CRPS (fair)": ("crps",)}
SCALE_NOTE = "CRPS, MSE and MAE on the 0-1 scale (digital VIL / 255)"


def _csi_label(key: str) -> str:
    return "CSI-M (avg)" if key == "avg" else f"CSI (≥ threshold) {key}"


def _interval_caption(scores: dict) -> str:
    intervals = scores.get("intervals")
    if not intervals:
        return ""
    return (f"; under CSI and CRPS: {intervals['level']:.0%} interval, bootstrap over {intervals['events']} "
            f"events ({intervals['resamples']} draws)")


def render_table(scores: dict) -> Table:
    """CSI per threshold (a pixel counts at ≥ threshold) and the summary scores, PreDiff beside each baseline;
    under CSI and CRPS their bootstrap intervals, where there are some. CRPS (fair) is the fair ensemble estimator
    (unbiased for the ensemble's distribution), CRPS (standard) the usual one; CRPS, MSE and MAE on the 0–1
    scale."""
    columns = {"PreDiff": scores, **scores["baselines"]}
    table = Table(title=f"skill on {scores['n_cases']} case(s), {scores.get('n_members', 1)} member(s)"
                        + _interval_caption(scores), caption=SCALE_NOTE)
    table.add_column("score")
    for name in columns:
        table.add_column(name, justify="right")
    with_intervals = bool(scores.get("intervals"))

    def add(label, path, interval_path):
        table.add_row(label, *(_fmt(_pick(c, path)) for c in columns.values()))
        if with_intervals and interval_path is not None:
            table.add_row("", *(_interval(_pick(c, ("intervals",) + interval_path, list)) for c in columns.values()),
                          style="dim")

    for key in [k for k in scores["csi"] if k != "avg"] + ["avg"]:
        add(_csi_label(key), ("csi", key), ("csi", key))
    for label, path in SUMMARY_ROWS:
        add(label, path, INTERVAL_ROWS.get(label))
    return table


def render_differences(scores: dict) -> Optional[Table]:
    """PreDiff − each baseline with its paired interval; * where the interval excludes 0 (None without any)."""
    differences = {name: d for name, d in (scores.get("differences") or {}).items() if d}
    if not differences:
        return None
    level = next(iter(differences.values()))["level"]
    table = Table(title=f"PreDiff − baseline, {level:.0%} paired interval; * = the interval excludes 0",
                  caption="CSI: > 0 favours PreDiff; CRPS: < 0 favours PreDiff")
    table.add_column("score")
    for name in differences:
        table.add_column(name, justify="right")
    rows = [(_csi_label(k), ("csi", k)) for k in [k for k in scores["csi"] if k != "avg"] + ["avg"]]
    for label, path in rows + [("CRPS (fair)", ("crps",))]:
        cells = [_difference(_entry(d, path)) for d in differences.values()]
        table.add_row(label, *(c[0] for c in cells))
        table.add_row("", *(c[1] for c in cells), style="dim")
    return table


def _entry(block: dict, path):
    for key in path:
        block = block.get(key) if isinstance(block, dict) else None
    return block


def parse_baselines(text: Optional[str]) -> Optional[tuple]:
    """'persistence,steps' → ('persistence', 'steps'); 'none' → (); None stays None (the config's
    score.baselines). InputError naming the valid baselines for an unknown one."""
    from prediff.baselines import baseline_names

    if text is None:
        return None
    names = tuple(dict.fromkeys(v for v in text.replace(" ", "").split(",") if v))
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in baseline_names()]
    if unknown or not names:
        raise InputError(f"--baselines {text!r}: choose from {', '.join(baseline_names())} (comma-separated), or "
                         "none")
    return names


def register(app: typer.Typer) -> None:
    @app.command("score")
    @guarded(oom_hint="try fewer --samples, a smaller --set score.batch_size=N or sample.member_batch=N")
    @forecast_options
    def score(
        out: Annotated[Path, typer.Option("--out", "-o", help="Folder for scores.json, plots, config.")] = Path("scores"),
        forecast_file: Annotated[Optional[Path], typer.Option(
            "--forecast", metavar="FILE", help="A forecast NetCDF written by `prediff sample`, to score against "
            "--truth.")] = None,
        truth: Annotated[Optional[Path], typer.Option(
            "--truth", metavar="FILE", help="With --forecast: the radar file holding the truth (the frames after the "
            "forecast's context).")] = None,
        variable: Annotated[str, typer.Option(
            "--variable", metavar="NAME", help="With --forecast: the variable (NetCDF) or dataset (HDF5) of --truth "
            "holding the VIL.")] = "vil",
        event: Annotated[Optional[int], typer.Option(
            "--event", min=0, help="With --forecast: event of the truth file. (default: the one the forecast "
            "records)")] = None,
        start: Annotated[Optional[int], typer.Option(
            "--start", min=0, help="With --forecast: first context frame in the truth file. (default: the one the "
            "forecast records)")] = None,
        split: Annotated[Optional[Split], typer.Option(
            "--split", help="Forecast and score every case of this split of --data, as `prediff sample` would.")
        ] = None,
        limit: Annotated[Optional[int], typer.Option(
            "--limit", min=1, help="With --split: score at most N sequences.")] = None,
        data: DataOpt = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted evaluation in --out.")] = False,
        baselines: Annotated[Optional[str], typer.Option(
            "--baselines", metavar="NAME,...", help="Baselines scored beside the model: persistence, optical_flow, "
            "steps (pysteps' STEPS ensemble, as many members as the model), comma-separated, or none. (default: "
            "all three)")] = None,
        rank_min: Annotated[Optional[float], typer.Option(
            "--rank-min", min=0.0, max=255.0, metavar="VIL", help="Leave out of the rank histogram the pixels where "
            "the observation and every member are below this digital VIL; 0 counts every pixel. (default: 16)")
        ] = None,
        json_: JsonOpt = False,
        *, forecast: dict,
    ):
        """Score forecasts (CSI/POD/SUCR/bias, pooled CSI, MSE/MAE/SSIM, CRPS, FSS, spread-skill, rank histogram,
        Brier/reliability/ROC) with bootstrap intervals, against persistence, optical-flow extrapolation and STEPS:
        a written forecast (--forecast with --truth), or the model over a split of a dataset (--data with --split),
        each case forecast as `prediff sample` would with the same settings (case i with seed + i)."""
        from prediff.pipelines.score_run import run_score

        values = forecast["values"]
        chosen = parse_baselines(baselines)
        if chosen is not None:
            values["score.baselines"] = chosen
        if rank_min is not None:
            values["score.rank_min"] = float(rank_min)
        if data is not None:
            values["data.root"] = str(data)
        elif forecast["config"] is None and not any(s.split("=", 1)[0].strip() == "data.root"
                                                    for s in forecast["sets"]):
            values["data.root"] = None  # the model's training data path is not this evaluation's data
        with json_output(json_):
            with StepsDisplay("scoring", unit="sequences") as display:
                scores, paths, _ = run_score(out, forecast=forecast_file, truth=truth, event=event, start=start,
                                             variable=variable, split=None if split is None else Split(split).value,
                                             limit=limit, resume=resume, progress=display.update, **forecast)
            console.print(render_table(scores))
            differences = render_differences(scores)
            if differences is not None:
                console.print(differences)
            for line in scores.get("notes", []) or []:
                echo(str(line))
            echo(f"wrote {', '.join(str(p) for p in paths)}")
        if json_:
            emit_json(scores)
