"""The settings of a forecast: one rule for every command that samples (`sample`, `score --split`, the Python API).

    start  = --config PRESET|PATH when given, else the model's own config (stored in its UNet checkpoint)
    result = start + --set overrides + the dedicated options (which win), validated once

Choosing another sampler without choosing its steps takes that sampler's usual count (`DEFAULT_SOLVER_STEPS`):
`--sampler dpmpp` on a DDIM-50 config runs 20 steps, not 50.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Any, Mapping, Optional, Sequence

from .loader import load_config, override_config
from .schema import DEFAULT_SOLVER_STEPS, Config


def _given_keys(overrides: Sequence[str], values: Mapping[str, Any]) -> set:
    return {item.split("=", 1)[0].strip() for item in overrides} | set(values)


def forecast_config(model_config: Config, source: Optional[str] = None, overrides: Sequence[str] = (),
                    values: Optional[Mapping[str, Any]] = None) -> Config:
    """`model_config` (or the config `source` names) with `overrides` (`section.key=value` text) and `values`
    (dotted key → typed value, None clears an optional value) applied. A model's config first gets this version's
    defaults for what is not a property of the model (`current_presentation`)."""
    values = dict(values or {})
    start = load_config(source) if source else current_presentation(model_config)
    config = override_config(start, overrides, values)
    if config.sample.sampler != start.sample.sampler and "sample.steps" not in _given_keys(overrides, values):
        steps = DEFAULT_SOLVER_STEPS[config.sample.sampler]
        config = dataclasses.replace(config, sample=dataclasses.replace(config.sample, steps=steps))
    return config


def current_presentation(model_config: Config) -> Config:
    """A model's stored config with this prediff version's defaults for what is not a property of the model:
    the baselines `score` compares against and the member panels of the pictures. A stored config lists the
    choices of the version that trained the model (before the STEPS baseline existed, say); --config and --set
    still override them."""
    defaults = Config()
    return dataclasses.replace(
        model_config, score=dataclasses.replace(model_config.score, baselines=defaults.score.baselines),
        sample=dataclasses.replace(model_config.sample, gif_members=defaults.sample.gif_members))


def sample_values(*, samples=None, sampler=None, steps=None, eta=None, align=None, align_target=None,
                  align_factor=None, align_oracle=None, guide_scale=None, couple_members=None,
                  precision=None) -> dict:
    """The given forecast options as `sample.*` config values (options left out stay the config's).

    An alignment value (--align-target, --align-factor or --align-oracle) replaces the config's choice among the
    three and implies `--align avg_x` unless --align says otherwise (then validation names the contradiction)."""
    values = {f"sample.{k}": (v.value if isinstance(v, enum.Enum) else v) for k, v in dict(
        samples=samples, sampler=sampler, steps=steps, eta=eta, align=align, guide_scale=guide_scale,
        couple_members=couple_members, precision=precision).items() if v is not None}
    chosen = dict(align_target=align_target, align_factor=align_factor, align_oracle=align_oracle)
    if any(v is not None for v in chosen.values()):
        values.update({f"sample.{k}": v for k, v in chosen.items()})
        values.setdefault("sample.align", "avg_x")
    return values
