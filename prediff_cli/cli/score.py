"""`prediff score`: skill of a written forecast, or of the model over a whole split, against baselines."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from typing_extensions import Annotated

from prediff_cli.cli.options import ConfigOpt, DataOpt, Device, DeviceOpt, SeedOpt, SetOpt
from prediff_cli.cli.reporting import console, echo, guarded
from prediff_cli.errors import InputError


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
            "--truth", help="Mode 1: the radar file holding the truth (frames start+7 … start+12).")] = None,
        event: Annotated[int, typer.Option("--event", min=0)] = 0,
        start: Annotated[int, typer.Option("--start", min=0)] = 0,
        split: Annotated[Optional[str], typer.Option("--split", help="Mode 2: test or val of --data.")] = None,
        limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Score at most N sequences.")] = None,
        samples: Annotated[int, typer.Option("--samples", "-n", min=1, help="Ensemble members (mode 2).")] = 8,
        sampler: Annotated[str, typer.Option("--sampler", help="ddim, dpmpp or ddpm (mode 2).")] = "ddim",
        steps: Annotated[Optional[int], typer.Option(
            "--steps", min=1, help="Solver steps (mode 2; default ddim 50, dpmpp 20).")] = None,
        eta: Annotated[float, typer.Option(
            "--eta", min=0.0, max=1.0, help="Solver noise for ddim/dpmpp (mode 2): 0 ODE, 1 SDE.")] = 0.0,
        align: Annotated[str, typer.Option("--align", help="none or avg_x (mode 2).")] = "none",
        align_target: Annotated[Optional[float], typer.Option("--align-target")] = None,
        align_factor: Annotated[Optional[float], typer.Option("--align-factor")] = None,
        align_oracle: Annotated[Optional[float], typer.Option(
            "--align-oracle", help="EVALUATION: factor × the true future mean (the paper used 2).")] = None,
        guide_scale: Annotated[float, typer.Option("--guide-scale")] = 50.0,
        vae: Annotated[Optional[Path], typer.Option("--vae")] = None,
        unet: Annotated[Optional[Path], typer.Option("--unet")] = None,
        align_net: Annotated[Optional[Path], typer.Option("--align-net")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted evaluation in --out.")] = False,
        overwrite: Annotated[bool, typer.Option(
            "--overwrite", help="Replace scores already in --out (default: refuse).")] = False,
        allow_mismatch: Annotated[bool, typer.Option(
            "--allow-mismatch", help="Score even when the UNet or alignment network was trained on another VAE.")
        ] = False,
        config: ConfigOpt = "tiny",
        sets: SetOpt = None,
        data: DataOpt = None,
        device: DeviceOpt = Device.auto,
        seed: SeedOpt = None,
    ):
        """Score forecasts (CSI/POD/SUCR/bias, pooled CSI, MSE/MAE/SSIM, CRPS, FSS, spread-skill, rank histogram)
        against persistence and optical-flow extrapolation."""
        from prediff_cli.cli.options import resolve_config
        from prediff_cli.pipelines.score_run import ScoreOptions, run_score

        if (forecast is None) == (split is None):
            raise InputError("choose one mode: --forecast F.nc --truth T.h5, or --data DIR --split test|val")
        if forecast is not None and truth is None:
            raise InputError("--forecast needs --truth (the radar file whose later frames are the truth)")
        cfg = resolve_config(config, sets, data, device, seed)
        options = ScoreOptions(out=out, forecast=forecast, truth=truth, event=event, start=start, split=split,
                               limit=limit, samples=samples, sampler=sampler, steps=steps, eta=eta, align=align,
                               align_target=align_target, align_factor=align_factor, align_oracle=align_oracle,
                               guide_scale=guide_scale, vae=vae, unet=unet, align_net=align_net, resume=resume,
                               overwrite=overwrite, allow_mismatch=allow_mismatch)
        display = {}

        def progress(done: int, total: int) -> None:
            from prediff_cli.cli.progress import StepsDisplay

            if "bar" not in display:
                display["bar"] = StepsDisplay("scoring", total, unit="sequences").__enter__()
            display["bar"].progress.update(display["bar"].task_id, completed=done)

        try:
            scores, paths = run_score(cfg, options, progress)
        finally:
            if "bar" in display:
                display["bar"].__exit__(None, None, None)
        console.print(render_table(scores))
        echo(f"wrote {', '.join(str(p) for p in paths)}")
