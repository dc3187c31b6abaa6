"""`prediff score` as one plain function: scores.json + plots out.

With `forecast`: a written forecast against the truth frames of a radar file (its `variable`; the event and start
frame the forecast records unless given); no model is loaded, the settings start from `config` or the built-in
defaults. With `split`: the model over a whole split; the settings start, as for `prediff sample`, from `config` or
the model's own config, so both commands forecast alike.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

from prediff.config import Config
from prediff.config.forecast_settings import forecast_config
from prediff.errors import InputError
from prediff.io.output_dir import check_output_dir
from prediff.runtime import setup_runtime

from .evaluate import finish_split, score_forecast_file, score_split, write_outputs
from .model import Checkpoints, load_model
from .precision import check_precision_request

SPLITS = ("test", "val")


def run_score(out: Path, *, forecast: Optional[Path] = None, truth: Optional[Path] = None,
              event: Optional[int] = None, start: Optional[int] = None, variable: str = "vil",
              split: Optional[str] = None, limit: Optional[int] = None, model: str = "demo",
              config: Optional[str] = None, sets: Sequence[str] = (), values: Optional[Mapping[str, Any]] = None,
              checkpoints: Checkpoints = Checkpoints(), allow_mismatch: bool = False, resume: bool = False,
              overwrite: bool = False,
              progress: Optional[Callable[[int, int], None]] = None) -> Tuple[dict, List[Path], Config]:
    """Score into `out`; returns (scores, written paths, the resolved config)."""
    if (forecast is None) == (split is None):
        raise InputError("choose one mode: --forecast F.nc --truth T.h5, or --data DIR --split test|val")
    if forecast is not None and truth is None:
        raise InputError("--forecast needs --truth (the radar file whose later frames are the truth)")
    if split is not None and split not in SPLITS:
        raise InputError(f"--split {split!r} is not valid; choose {' or '.join(SPLITS)}")
    out = check_output_dir(out, () if resume else ("scores.json",), overwrite, what="scores")
    if forecast is not None:
        settings = forecast_config(Config(), config, sets, values)
        scores, cases = score_forecast_file(forecast, truth, event, start, settings, variable=variable)
        return scores, write_outputs(out, scores, settings, cases), settings

    loaded = load_model(model, vae=checkpoints.vae, unet=checkpoints.unet, align=checkpoints.align,
                        allow_mismatch=allow_mismatch)
    settings = forecast_config(loaded.config, config, sets, values)
    if settings.data.root is None:
        raise InputError("--split needs --data DIR (a SEVIR-LR tree)")
    check_precision_request(settings.sample.precision)
    setup_runtime(settings.device, settings.seed)
    scores, cases = score_split(loaded, settings, split, out, limit=limit, resume=resume, progress=progress)
    written = write_outputs(out, scores, settings, cases)
    finish_split(out)
    return scores, written, settings
