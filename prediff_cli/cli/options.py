"""The common options, spelled the same on every command that takes them.

`--config PRESET|PATH`, repeatable `--set section.key=value`, `--data DIR`, `--device`, `--seed`.
`resolve_config` folds them into one `Config` through the shared loader.
"""
from __future__ import annotations

import functools
import inspect
import typing
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from prediff.config import Config, load_config
from prediff.config.forecast_settings import sample_values
from prediff.config.schema import ALIGN_MODES, DEFAULT_SOLVER_STEPS, PRECISIONS, SAMPLERS


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"
    ascend = "ascend"


ConfigOpt = Annotated[str, typer.Option(
    "--config", "-c", metavar="PRESET|PATH",
    help="Preset (tiny, small, demo, sevirlr) or a YAML file; a YAML may start from a preset with 'base:'.")]
SetOpt = Annotated[Optional[List[str]], typer.Option(
    "--set", metavar="SECTION.KEY=VALUE", help="Override one config value; repeatable.")]
DataOpt = Annotated[Optional[Path], typer.Option(
    "--data", metavar="DIR", help="Dataset root holding CATALOG.csv and data/vil/YEAR/*.h5.")]
DeviceOpt = Annotated[Device, typer.Option(
    "--device", case_sensitive=False, help="Where MindSpore runs; auto tries Ascend, then GPU, then CPU.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed (default: the seed of --config: 0 in "
                                                "every preset).")]


def resolve_config(config: str, sets: Optional[List[str]] = None, data: Optional[Path] = None,
                   device: Optional[Device] = None, seed: Optional[int] = None) -> Config:
    """Load `config` with the `--set` overrides, then the dedicated options (which win)."""
    values = {}
    if data is not None:
        values["data.root"] = str(data)
    if device is not None:
        values["device"] = Device(device).value
    if seed is not None:
        values["seed"] = int(seed)
    return load_config(config, list(sets or []), values)


# ------------------------------------------------------------------------------------------------------------------
# the forecast settings, spelled the same on `sample` and `score`: each becomes a `sample.*` config override


Sampler = Enum("Sampler", {name: name for name in SAMPLERS}, type=str)
Align = Enum("Align", {name: name for name in ALIGN_MODES}, type=str)
Precision = Enum("Precision", {name: name for name in PRECISIONS}, type=str)

def _option(tp, *names, **kwargs):
    return Annotated[tp, typer.Option(*names, **kwargs)]


OverwriteOpt = _option(bool, "--overwrite", help="Replace earlier results in --out (refused by default).")
JsonOpt = _option(bool, "--json", help="Print the result as JSON on stdout (messages and progress go to stderr).")

#: the model `--model` defaults to; the help shows its own settings (its checkpoint's config: the `demo` preset's)
DEFAULT_MODEL = "demo"
_DEFAULTS = load_config(DEFAULT_MODEL)
_SAMPLE, _SEED = _DEFAULTS.sample, _DEFAULTS.seed


def model_default(value) -> str:
    """'(default: the model's own; demo: VALUE)' for a forecast setting the model's config gives."""
    if isinstance(value, (tuple, list)):
        value = ",".join(f"{v:g}" for v in value)
    elif isinstance(value, float):
        value = f"{value:g}"
    return f"(default: the model's own; {DEFAULT_MODEL}: {value})"

def _usual_steps() -> str:
    """'50 for ddim, 20 for dpmpp, ...': each solver's usual step count."""
    return ", ".join(f"{n} for {name}" for name, n in DEFAULT_SOLVER_STEPS.items() if name != "ddpm")


#: the options of every command that forecasts (sample, score): name → (type, default); each becomes a config value
#: or a model choice, see `forecast_options`
FORECAST_OPTIONS = {
    "model": (_option(str, "--model", "-m", metavar="NAME|DIR", help="Model to forecast with: an installed name "
                      "(see `prediff models`) or a folder holding vae.ckpt, unet.ckpt and align.ckpt. The bundled "
                      "demo model is trained on synthetic storms, not real radar."), DEFAULT_MODEL),
    "samples": (_option(Optional[int], "--samples", "-n", min=1,
                        help=f"Ensemble members {model_default(_SAMPLE.samples)}."), None),
    "sampler": (_option(Optional[Sampler], "--sampler", help="ddim (fast), dpmpp (DPM-Solver++(2M), 20 steps), "
                        "dpmpp3m (DPM-Solver++(3M), 4 steps), sasolver (SA-Solver, 5 steps), ddpm (faithful, 1000 "
                        f"steps) {model_default(_SAMPLE.sampler)}."), None),
    "steps": (_option(Optional[int], "--steps", min=1, help="Solver steps, not ddpm "
                      f"{model_default(_SAMPLE.steps)[:-1]}; the sampler's usual count, "
                      f"{_usual_steps()}, when --sampler changes the sampler)."), None),
    "eta": (_option(Optional[float], "--eta", min=0.0, max=1.0, help="Solver noise, not ddpm: 0 deterministic "
                    f"(ODE), 1 stochastic (SDE) {model_default(_SAMPLE.eta)}."), None),
    "align": (_option(Optional[Align], "--align", help="Knowledge alignment toward an anticipated mean intensity "
                      f"{model_default(_SAMPLE.align)}."), None),
    "align_target": (_option(Optional[float], "--align-target", help="Anticipated mean VIL of the forecast frames "
                             "(digital 0-255); implies --align avg_x."), None),
    "align_factor": (_option(Optional[float], "--align-factor", help="Anticipated mean = factor x mean of the last "
                             "context frame (default 1); implies --align avg_x."), None),
    "align_oracle": (_option(Optional[float], "--align-oracle", help="EVALUATION ONLY: anticipated mean = factor x "
                             "the true future mean (the paper used 2); needs the truth frames."), None),
    "guide_scale": (_option(Optional[float], "--guide-scale", min=0.0, help="Alignment strength "
                            f"{model_default(_SAMPLE.guide_scale)}."), None),
    "precision": (_option(Optional[Precision], "--precision", help="Linear layers and convolutions of the UNet and "
                          "VAE in bf16 (CPUs with AVX512_BF16; float32 accumulation), fp32, or auto: bf16 where the "
                          f"CPU has it and its self-check passes {model_default(_SAMPLE.precision)}."), None),
    "couple_members": (_option(Optional[bool], "--couple-members/--per-member", help="Official coupling of the "
                               "members' guidance through one norm, or guidance per member "
                               f"{model_default('--couple-members' if _SAMPLE.couple_members else '--per-member')}."),
                       None),
    "vae": (_option(Optional[Path], "--vae", metavar="CKPT", help="Use this VAE checkpoint instead of the model's."),
            None),
    "unet": (_option(Optional[Path], "--unet", metavar="CKPT", help="Use this UNet checkpoint instead of the "
                     "model's."), None),
    "align_net": (_option(Optional[Path], "--align-net", metavar="CKPT", help="Use this alignment checkpoint "
                          "instead of the model's."), None),
    "allow_mismatch": (_option(bool, "--allow-mismatch", help="Use a UNet or alignment network trained on another "
                               "VAE (refused by default)."), False),
    "overwrite": (OverwriteOpt, False),
    "config": (_option(Optional[str], "--config", "-c", metavar="PRESET|PATH", help="Start the settings from this "
                       "preset or YAML instead of the model's own config."), None),
    "sets": (SetOpt, None),
    "device": (DeviceOpt, Device.auto),
    "seed": (_option(Optional[int], "--seed", help=f"Random seed {model_default(_SEED)}."),
             None),
}


def forecast_options(command=None, *, without=()):
    """Give a Typer command the `FORECAST_OPTIONS`; it receives them as one keyword `forecast`: the arguments
    `run_sample` and `run_score` share (model, config, sets, values, checkpoints, allow_mismatch, overwrite).
    Use as `@forecast_options`, or `@forecast_options(without=("overwrite",))` for a command where an option has
    no meaning (it then gets the option's default)."""
    if command is None:
        return functools.partial(forecast_options, without=tuple(without))
    signature = inspect.signature(command)
    hints = typing.get_type_hints(command, include_extras=True)  # Typer reads the options from the annotations
    own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
           if p.name != "forecast"]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=tp)
              for name, (tp, default) in FORECAST_OPTIONS.items() if name not in without]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from prediff.pipelines.model import Checkpoints  # pipelines load when a command runs, not at start-up

        flags = {name: kwargs.pop(name) if name not in without else default
                 for name, (_, default) in FORECAST_OPTIONS.items()}
        values = sample_values(**{k: flags[k] for k in ("samples", "sampler", "steps", "eta", "align", "align_target",
                                                        "align_factor", "align_oracle", "guide_scale",
                                                        "couple_members", "precision")})
        values["device"] = Device(flags["device"]).value
        if flags["seed"] is not None:
            values["seed"] = int(flags["seed"])
        forecast = dict(model=flags["model"], config=flags["config"], sets=list(flags["sets"] or []), values=values,
                        checkpoints=Checkpoints(flags["vae"], flags["unet"], flags["align_net"]),
                        allow_mismatch=flags["allow_mismatch"], overwrite=flags["overwrite"])
        return command(*args, forecast=forecast, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + shared)
    return wrapper
