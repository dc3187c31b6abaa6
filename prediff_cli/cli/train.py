"""`prediff train-vae`, `prediff train-diffusion`, `prediff train-align`: one trainer core, three losses.

The three commands share every option; the latent trainers also take `--vae` and `--latent-cache`. With
`--workers N > 1` the command re-launches itself under MindSpore's `msrun` with N data-parallel workers.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import shlex
import subprocess
import sys
import typing
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from prediff.cli.options import ConfigOpt, DataOpt, Device, DeviceOpt, SeedOpt, SetOpt, resolve_config
from prediff.cli.reporting import echo, guarded
from prediff.errors import PrediffError

RunDirOpt = Annotated[Optional[Path], typer.Option(
    "--run-dir", metavar="DIR", help="Where checkpoints, metrics.jsonl and config.yaml go (default runs/<name>).")]
StepsOpt = Annotated[Optional[int], typer.Option(
    "--steps", min=1, help="Total optimizer steps (overrides the config's train_*.steps).")]
ResumeOpt = Annotated[bool, typer.Option(
    "--resume", help="Continue the run in --run-dir from its last.ckpt (else its newest loadable last-<step>.ckpt) "
                     "with the config stored there; only --data, --device, --steps and the log/val/ckpt cadence may "
                     "change.")]
VaeOpt = Annotated[Optional[Path], typer.Option(
    "--vae", metavar="CKPT", help="Frozen VAE checkpoint (from train-vae or convert-weights).")]
LatentCacheOpt = Annotated[Optional[Path], typer.Option(
    "--latent-cache", metavar="DIR", help="Keep the frozen VAE's encodings of the training frames in DIR and reuse "
                                          "them in later epochs (sets train_*.latent_cache; aug_mode 0 or 2).")]
WorkersOpt = Annotated[int, typer.Option(
    "--workers", min=1, help="Data-parallel workers launched with MindSpore's msrun (1 = this process only).")]
MsrunTimeoutOpt = Annotated[int, typer.Option(
    "--msrun-timeout", min=10, help="Seconds before a data-parallel launch is abandoned (msrun waits for "
                                    "workers that die before joining).")]

COMMANDS = {
    # command name: (component, default run dir, help)
    "train-vae": ("vae", "runs/vae", "Train the frame VAE: L1 + KL + hinge PatchGAN."),
    "train-diffusion": ("unet", "runs/diffusion",
                        "Train the latent Earthformer-UNet on a frozen VAE: ε-prediction."),
    "train-align": ("align", "runs/align",
                    "Train the knowledge-alignment network on a frozen VAE: average intensity."),
}


def explicit_keys(ctx: Optional[typer.Context], sets: Optional[List[str]], data: Optional[Path],
                  seed: Optional[int]) -> Optional[List[str]]:
    """The config keys this command line sets on purpose (compared with a resumed run's stored config): every key
    when --config was given, else the --set keys, `data.root` for --data and `seed` for --seed."""
    # click's ParameterSource, by name: typer vendors click privately
    source = ctx.get_parameter_source("config") if ctx is not None else None
    if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
        return None
    keys = [item.split("=", 1)[0].strip() for item in sets or []]
    if data is not None:
        keys.append("data.root")
    if seed is not None:
        keys.append("seed")
    return keys


def with_latent_cache(cfg, command: str, folder: Path, explicit: Optional[List[str]]):
    """`cfg` with `<train section>.latent_cache = folder`, and the explicit keys with that key added."""
    from prediff.pipelines.training.task import SECTIONS

    section = SECTIONS[COMMANDS[command][0]]
    cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), latent_cache=str(folder))})
    return cfg, None if explicit is None else explicit + [f"{section}.latent_cache"]


def run_train_command(command: str, cfg, *, run_dir: Optional[Path], steps: Optional[int], resume: bool,
                      vae: Optional[Path], workers: int, msrun_timeout: int = 900,
                      explicit: Optional[List[str]] = None) -> None:
    component, default_dir, _ = COMMANDS[command]
    run_dir = Path(run_dir or default_dir)
    if workers > 1:
        _launch_msrun(workers, run_dir, msrun_timeout)
        return
    from prediff.cli.progress import TrainingDisplay
    from prediff.pipelines.training.run import TrainRequest, run_training

    class Display(TrainingDisplay):
        def on_resume(self, path, step, skipped):
            why = f" ({'; '.join(skipped)})" if skipped else ""
            echo(f"resuming from {path} at step {step}{why}")

    display = Display(f"{command} ")
    result = run_training(TrainRequest(component=component, config=cfg, run_dir=run_dir, steps=steps,
                                       resume=resume, vae_checkpoint=vae, explicit_keys=explicit), listener=display)
    if result.status == "interrupted":
        echo(f"interrupted at step {result.step}; saved {result.last_checkpoint} — continue with --resume")
        raise typer.Exit(130)
    best = f", best {result.best_checkpoint} (val {result.best_val:.4g})" if result.best_checkpoint else ""
    echo(f"done: step {result.step}, last {result.last_checkpoint}{best}; metrics in {run_dir / 'metrics.jsonl'}")


def _launch_msrun(workers: int, run_dir: Path, timeout: int) -> None:
    """Re-run this exact command under msrun with `workers` local workers (and without --workers)."""
    import shutil

    # the msrun installed beside this interpreter (a venv need not be on PATH), else the one on PATH
    sibling = Path(sys.executable).parent / "msrun"
    msrun = str(sibling) if sibling.is_file() else shutil.which("msrun")
    if msrun is None:
        raise PrediffError("msrun (installed with MindSpore) is not on PATH; cannot launch data-parallel workers")
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        argv.append(arg)
    log_dir = run_dir / "msrun_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    port = 8118 + os.getpid() % 1000
    cmd = [msrun, f"--worker_num={workers}", f"--local_worker_num={workers}", f"--master_port={port}",
           "--join=True", f"--log_dir={log_dir}", "python", "-m", "prediff"] + argv
    # msrun starts each worker as a bare `python`: put this interpreter's folder first on PATH so the workers run
    # the same Python (and virtual environment) as this command
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    echo(f"launching {workers} workers: {' '.join(shlex.quote(c) for c in cmd)}")
    try:
        proc = subprocess.run(cmd, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise PrediffError(f"data-parallel run did not finish within {timeout} s; see {log_dir}") from None
    if proc.returncode != 0:
        raise PrediffError(f"data-parallel run failed (exit {proc.returncode}); worker logs in {log_dir}")
    echo(f"data-parallel run finished; worker logs in {log_dir}")


def _make_command(app: typer.Typer, command: str, takes_vae: bool) -> None:
    doc = COMMANDS[command][2]

    def train(ctx: typer.Context, config: ConfigOpt = "tiny", sets: SetOpt = None, data: DataOpt = None,
              device: DeviceOpt = Device.auto, seed: SeedOpt = None, run_dir: RunDirOpt = None,
              steps: StepsOpt = None, resume: ResumeOpt = False, vae: VaeOpt = None,
              latent_cache: LatentCacheOpt = None, workers: WorkersOpt = 1, msrun_timeout: MsrunTimeoutOpt = 900):
        cfg = resolve_config(config, sets, data, device, seed)
        explicit = explicit_keys(ctx, sets, data, seed)
        if latent_cache is not None:
            cfg, explicit = with_latent_cache(cfg, command, latent_cache, explicit)
        run_train_command(command, cfg, run_dir=run_dir, steps=steps, resume=resume, vae=vae, workers=workers,
                          msrun_timeout=msrun_timeout, explicit=explicit)

    if not takes_vae:
        # train-vae has no frozen VAE (nor latents to cache): Typer builds the options from the signature, so --vae
        # and --latent-cache are left out of it (the function then runs with None for both); the annotations are
        # resolved here, as Typer reads them from it as given
        hints = typing.get_type_hints(train, include_extras=True)
        signature = inspect.signature(train)
        train.__signature__ = signature.replace(parameters=[
            p.replace(annotation=hints[p.name]) for p in signature.parameters.values()
            if p.name not in ("vae", "latent_cache")])
    train.__doc__ = doc
    train.__name__ = command.replace("-", "_")
    app.command(command, help=doc)(guarded(train))


def register(app: typer.Typer) -> None:
    _make_command(app, "train-vae", takes_vae=False)
    _make_command(app, "train-diffusion", takes_vae=True)
    _make_command(app, "train-align", takes_vae=True)
