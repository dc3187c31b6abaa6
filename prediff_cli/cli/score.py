"""`prediff score`: skill of a written forecast, or of the model over a whole split, against baselines."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from typing_extensions import Annotated

from prediff_cli.cli.options import (AlignFactorOpt, AlignNetCkptOpt, AlignOpt, AlignOracleOpt, AlignTargetOpt,
                                     AllowMismatchOpt, CoupleOpt, DataOpt, Device, DeviceOpt, EtaOpt,
                                     ForecastConfigOpt, GuideScaleOpt, ModelOpt, OverwriteOpt, SamplerOpt, SamplesOpt,
                                     SeedOpt, SetOpt, SolverStepsOpt, UnetCkptOpt, VaeCkptOpt)
from prediff_cli.cli.progress import StepsDisplay
from prediff_cli.cli.reporting import console, echo, guarded
from prediff_cli.config.forecast_settings import sample_values


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def render_table(scores: dict) -> Table:
    """CSI per threshold and the summary scores, PreDiff beside each baseline."""
    columns = {"PreDiff": scores, **scores["baselines"]}
    table = Table(title=f"skill on {scores['n_cases']} case(s), {scores.get('n_members', 1)} member(s)")
    table.add_column("score")
    for name in columns:
        table.add_column(name, justify="right")
    for key in [k for k in scores["csi"] if k != "avg"] + ["avg"]:
        label = "CSI-M (avg)" if key == "avg" else f"CSI >= {key}"
        table.add_row(label, *(_fmt(c["csi"].get(key)) for c in columns.values()))
    for name, pick in (("CSI-pool4 avg", lambda c: c["csi_pool4"]["avg"]),
                       ("CSI-pool16 avg", lambda c: c["csi_pool16"]["avg"]),
                       ("bias (freq.) avg", lambda c: c["bias"]["avg"]), ("CRPS", lambda c: c["crps"]["pool1"]),
                       ("MSE", lambda c: c["mse"]), ("MAE", lambda c: c["mae"]), ("SSIM", lambda c: c["ssim"])):
        row = []
        for c in columns.values():
            try:
                row.append(_fmt(pick(c)))
            except (KeyError, TypeError):
                row.append("-")
        table.add_row(name, *row)
    return table


def register(app: typer.Typer) -> None:
    @app.command("score")
    @guarded(oom_hint="try fewer --samples, a smaller --set score.batch_size=N or sample.member_batch=N")
    def score(
        out: Annotated[Path, typer.Option("--out", "-o", help="Folder for scores.json, plots, config.")] = Path("scores"),
        forecast: Annotated[Optional[Path], typer.Option(
            "--forecast", help="Mode 1: a forecast NetCDF written by `prediff sample`.")] = None,
        truth: Annotated[Optional[Path], typer.Option(
            "--truth", help="Mode 1: the radar file holding the truth (the frames after the forecast's context).")
        ] = None,
        event: Annotated[int, typer.Option("--event", min=0, help="Mode 1: event of the truth file.")] = 0,
        start: Annotated[int, typer.Option("--start", min=0, help="Mode 1: first context frame in the truth file.")
                         ] = 0,
        split: Annotated[Optional[str], typer.Option("--split", help="Mode 2: test or val of --data.")] = None,
        limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Mode 2: score at most N sequences.")
                         ] = None,
        model: ModelOpt = "demo",
        samples: SamplesOpt = None,
        sampler: SamplerOpt = None,
        steps: SolverStepsOpt = None,
        eta: EtaOpt = None,
        align: AlignOpt = None,
        align_target: AlignTargetOpt = None,
        align_factor: AlignFactorOpt = None,
        align_oracle: AlignOracleOpt = None,
        guide_scale: GuideScaleOpt = None,
        couple_members: CoupleOpt = None,
        vae: VaeCkptOpt = None,
        unet: UnetCkptOpt = None,
        align_net: AlignNetCkptOpt = None,
        allow_mismatch: AllowMismatchOpt = False,
        resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted evaluation in --out.")] = False,
        overwrite: OverwriteOpt = False,
        config: ForecastConfigOpt = None,
        sets: SetOpt = None,
        data: DataOpt = None,
        device: DeviceOpt = Device.auto,
        seed: SeedOpt = None,
    ):
        """Score forecasts (CSI/POD/SUCR/bias, pooled CSI, MSE/MAE/SSIM, CRPS, FSS, spread-skill, rank histogram)
        against persistence and optical-flow extrapolation. Mode 2 forecasts each case as `prediff sample` would
        with the same settings (case i with seed + i)."""
        from prediff_cli.pipelines.model import Checkpoints
        from prediff_cli.pipelines.score_run import run_score

        values = sample_values(samples=samples, sampler=sampler, steps=steps, eta=eta, align=align,
                               align_target=align_target, align_factor=align_factor, align_oracle=align_oracle,
                               guide_scale=guide_scale, couple_members=couple_members)
        values["device"] = device.value
        if seed is not None:
            values["seed"] = seed
        if data is not None:
            values["data.root"] = str(data)
        elif config is None and not any(item.split("=", 1)[0].strip() == "data.root" for item in sets or []):
            values["data.root"] = None  # the model's training data path is not this evaluation's data
        with StepsDisplay("scoring", unit="sequences") as display:
            scores, paths, _ = run_score(out, forecast=forecast, truth=truth, event=event, start=start, split=split,
                                         limit=limit, model=model, config=config, sets=list(sets or []),
                                         values=values, checkpoints=Checkpoints(vae, unet, align_net),
                                         allow_mismatch=allow_mismatch, resume=resume, overwrite=overwrite,
                                         progress=display.update)
        console.print(render_table(scores))
        echo(f"wrote {', '.join(str(p) for p in paths)}")
