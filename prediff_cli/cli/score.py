"""`prediff score`: skill of a written forecast, or of the model over a whole split, against baselines."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from typing_extensions import Annotated

from prediff.cli.options import DataOpt, JsonOpt, forecast_options
from prediff.cli.progress import StepsDisplay
from prediff.cli.reporting import console, echo, emit_json, guarded, json_output


#: the splits `--split` offers (`pipelines.score_run.SPLITS`, not imported here: the pipelines load when a command
#: runs, not when the CLI starts)
Split = Enum("Split", {"test": "test", "val": "val"}, type=str)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _pick(block: dict, path) -> Optional[float]:
    value = block
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) else None


#: the summary rows of the table: label → path into a score block ("-" where a block lacks it)
SUMMARY_ROWS = (
    ("CSI-pool4 avg", ("csi_pool4", "avg")), ("CSI-pool16 avg", ("csi_pool16", "avg")),
    ("bias (freq.) avg", ("bias", "avg")),
    ("CRPS (fair)", ("crps", "pool1")), ("CRPS (standard)", ("crps_standard", "pool1")),
    ("MSE", ("mse",)), ("MAE", ("mae",)), ("SSIM", ("ssim",)), ("FVD", ("fvd",)),
)


def render_table(scores: dict) -> Table:
    """CSI per threshold (a pixel counts at ≥ threshold) and the summary scores, PreDiff beside each baseline.
    CRPS (fair) is the fair ensemble estimator (unbiased for the ensemble's distribution), CRPS (standard) the
    usual one; both on the 0–1 scale."""
    columns = {"PreDiff": scores, **scores["baselines"]}
    table = Table(title=f"skill on {scores['n_cases']} case(s), {scores.get('n_members', 1)} member(s)")
    table.add_column("score")
    for name in columns:
        table.add_column(name, justify="right")
    for key in [k for k in scores["csi"] if k != "avg"] + ["avg"]:
        label = "CSI-M (avg)" if key == "avg" else f"CSI (≥ threshold) {key}"
        table.add_row(label, *(_fmt(_pick(c, ("csi", key))) for c in columns.values()))
    for label, path in SUMMARY_ROWS:
        table.add_row(label, *(_fmt(_pick(c, path)) for c in columns.values()))
    return table


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
        json_: JsonOpt = False,
        *, forecast: dict,
    ):
        """Score forecasts (CSI/POD/SUCR/bias, pooled CSI, MSE/MAE/SSIM, CRPS, FSS, spread-skill, rank histogram)
        against persistence and optical-flow extrapolation: a written forecast (--forecast with --truth), or the
        model over a split of a dataset (--data with --split), each case forecast as `prediff sample` would with
        the same settings (case i with seed + i)."""
        from prediff.pipelines.score_run import run_score

        values = forecast["values"]
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
            for line in scores.get("notes", []) or []:
                echo(str(line))
            echo(f"wrote {', '.join(str(p) for p in paths)}")
        if json_:
            emit_json(scores)
