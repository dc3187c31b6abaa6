"""From context frames and a loaded `Model` to an ensemble forecast (`prediff sample`, `score --split`, the API).

1. Encode the context once (posterior mean), repeat it for the N members.
2. Denoise the members in batches of `sample.member_batch` (`EnsembleSampler`), each sequence with the noise of
   its own seed, optionally steered toward an anticipated mean intensity (knowledge alignment).
3. Decode the target latents frame by frame → (N, 6, H, W) on 0–1.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from mindspore import Tensor

import prediff_models.diffusion as D
from prediff import __version__
from prediff.config import Config, SampleConfig, config_to_yaml
from prediff.config.forecast_settings import forecast_config, sample_values
from prediff.data.model_placement import OUTPUT_GRIDS, output_fields, written_orientation
from prediff.data.radar_input import RadarInput, read_radar_input
from prediff.errors import InputError
from prediff.heap import HeapTrimmer
from prediff.io.netcdf import forecast_dataset
from prediff.runtime import setup_runtime
from prediff.vil_scale import ARRAY_SCALES, to_model_scale

from .latents import jit_decoder, jit_encoder, split_moments
from .model_store import BUNDLED, CUSTOM, OPTION_OF
from .precision import check_precision_request, forecast_precision
from .sampler import EnsembleSampler, LatentCut, MemberNoise, solver_timesteps
from .tiled_forecast import TileLayout, forecast_tiled, layout_for


@dataclass
class AlignmentRequest:
    mode: str = "none"  # "none" or "avg_x"
    target: Optional[float] = None  # anticipated mean VIL of the target frames, digital 0–255
    factor: Optional[float] = None  # anticipated mean = factor × mean of the last context frame
    oracle_factor: Optional[float] = None  # evaluation only: factor × the true future mean (the paper's choice)

    @classmethod
    def from_config(cls, sample: SampleConfig) -> "AlignmentRequest":
        return cls(mode=sample.align, target=sample.align_target, factor=sample.align_factor,
                   oracle_factor=sample.align_oracle)

    def describe(self) -> str:
        if self.mode == "none":
            return "none"
        if self.target is not None:
            return f"avg_x target {self.target:g} (digital VIL)"
        if self.oracle_factor is not None:
            return f"avg_x oracle {self.oracle_factor:g} x true future mean (evaluation only)"
        return f"avg_x factor {self.factor if self.factor is not None else 1.0:g} x last context frame mean"


def alignment_target(request: AlignmentRequest, context: np.ndarray, truth: Optional[np.ndarray]) -> float:
    """ŷ on the 0–1 scale: the anticipated mean intensity of the 6 target frames."""
    if request.target is not None:
        if not 0 <= request.target <= 255:
            raise InputError(f"--align-target {request.target:g} is outside the digital VIL range 0–255")
        return request.target / 255.0
    if request.oracle_factor is not None:
        if truth is None:
            raise InputError("--align-oracle needs the truth frames, but the input has none after the context")
        return float(request.oracle_factor * truth.mean())
    factor = 1.0 if request.factor is None else request.factor
    if factor < 0:
        raise InputError(f"--align-factor {factor:g} must be >= 0")
    return float(factor * context[-1].mean())


@dataclass
class ForecastResult:
    members: np.ndarray  # (M, T_out, H, W) on 0–1
    context: np.ndarray  # (T_in, H, W)
    truth: Optional[np.ndarray]
    lead_minutes: list
    y_hat: Optional[float]
    seconds: float
    network_evaluations: int
    precision: str = "fp32"  # what the UNet's and VAE's linear layers and convolutions ran at: "fp32" or "bf16"
    layout: Optional[TileLayout] = None  # the windows of a domain larger than the model's frame, else None
    window_targets: Optional[list] = None  # with alignment over windows: each window's anticipated mean on 0–1


class Forecaster:
    """Encoder, compiled sampler and decoder built once for one model and one `SampleConfig`; `run` forecasts many
    contexts, each with `sample.samples` members.

    Noise: sequence b draws from its own generator `default_rng(seeds[b])`, in chunks of at most
    `sample.member_batch` members per UNet call (0 = everything in one call), so a sequence gets the same members
    whether it is forecast alone (`prediff sample --seed S`) or inside a batch of an evaluation (case seed S).

    Precision: `sample.precision` resolved here (`pipelines.precision`) and set on the UNet and the VAE before their
    graphs are compiled; the alignment network, whose gradient steers the members, stays float32."""

    def __init__(self, model, sample: SampleConfig):
        from prediff_models.kernels import apply_precision

        d = model.config.diffusion
        self.sample = sample
        self.precision = forecast_precision(sample.precision)
        apply_precision(self.precision, model.unet, model.vae)
        self.aligned = sample.align != "none"
        self.schedule = D.make_schedule(d.timesteps, d.beta_schedule, d.linear_start, d.linear_end, d.cosine_s)
        self.encode, self.decode = jit_encoder(model.vae), jit_decoder(model.vae, d.scale_factor)
        self.sampler = EnsembleSampler(model.unet, self.schedule, sampler=sample.sampler, steps=sample.steps,
                                       eta=sample.eta, align_net=model.network("align") if self.aligned else None,
                                       guide_scale=sample.guide_scale, couple_members=sample.couple_members)
        self.target_shape = tuple(model.config.unet.target_shape)

    @property
    def network_evaluations(self) -> int:
        return self.sampler.network_evaluations

    def calls(self, sequences: int) -> list:
        """The UNet batches of a run over `sequences` contexts: each a list of (sequence, first member, members)."""
        m, per_call = self.sample.samples, self.sample.member_batch
        if per_call == 0:
            return [[(b, 0, m) for b in range(sequences)]]
        if per_call >= m:  # whole sequences per call
            k = per_call // m
            return [[(b, 0, m) for b in range(s, min(s + k, sequences))] for s in range(0, sequences, k)]
        return [[(b, s, min(per_call, m - s))] for b in range(sequences) for s in range(0, m, per_call)]

    def context_latents(self, contexts: np.ndarray) -> np.ndarray:
        """(B, T_in, H, W) on 0–1 → posterior means (B, T_in, h, w, L) (the context uses the mean)."""
        return split_moments(self.encode(Tensor(contexts[..., None].astype(np.float32))))[0].asnumpy()

    def run(self, contexts: np.ndarray, y_hat: Optional[np.ndarray], seeds,
            progress: Optional[Callable[[], None]] = None, cut: Optional[LatentCut] = None) -> np.ndarray:
        """contexts (B, T_in, H, W), y_hat (B,) on 0–1 or None, seeds (B,) → members (B, M, T_out, H, W) on 0–1.
        `cut`: the contexts are one window of a larger domain; the noise is that window's part of the noise drawn
        on the whole domain's latent grid (`sampler.LatentCut`)."""
        if self.aligned and y_hat is None:
            raise InputError("aligned sampling needs an anticipated intensity")
        with HeapTrimmer():  # the first call compiles the coding and sampling graphs
            return self._run(contexts, y_hat, seeds, progress, cut)

    def _run(self, contexts, y_hat, seeds, progress, cut=None) -> np.ndarray:
        b, m = contexts.shape[0], self.sample.samples
        cond = self.context_latents(contexts)
        generators = [np.random.default_rng(int(seed)) for seed in seeds]
        latents = np.zeros((b, m) + self.target_shape, np.float32)
        for call in self.calls(b):
            rows = np.concatenate([np.repeat(cond[i:i + 1], n, axis=0) for i, _, n in call])
            y = None if y_hat is None else np.concatenate([np.full((n, 1), y_hat[i], np.float32) for i, _, n in call])
            noise = MemberNoise([(generators[i], n) for i, _, n in call], cut)
            out = self.sampler.sample(rows, noise, y, self.target_shape, progress)
            offset = 0
            for i, first, n in call:
                latents[i, first:first + n] = out[offset:offset + n]
                offset += n
        frames = self.decode(Tensor(latents.reshape((b * m,) + self.target_shape))).asnumpy()[..., 0]
        return frames.reshape((b, m) + frames.shape[1:])


def model_forecaster(model, sample: SampleConfig) -> Forecaster:
    """The `Forecaster` of `model` for the settings `sample`, kept on the model for the next call with the same
    settings: compiling the sampling and coding graphs takes far longer than a small forecast, so a process that
    forecasts again and again (`prediff watch`, the Python API in a loop) compiles them once. Only the last
    settings' forecaster is kept (each holds compiled graphs)."""
    kept = getattr(model, "forecaster_cache", None)
    if kept is not None and kept[0] == sample:
        return kept[1]
    forecaster = Forecaster(model, sample)
    if hasattr(model, "forecaster_cache"):
        model.forecaster_cache = (sample, forecaster)
    return forecaster


def run_forecast(model, config: Config, context: np.ndarray, truth: Optional[np.ndarray],
                 progress=None) -> ForecastResult:
    """One context (T_in, H, W) → a `config.sample.samples`-member forecast with the noise of `config.seed`.

    H and W at least the model's frame size (128); a larger domain is forecast in overlapping windows of that size
    (`tiled_forecast`) with `config.sample.tile_overlap` pixels of overlap, each aligned on its own."""
    layout = check_context(model.config, context, config.sample.tile_overlap)
    alignment = AlignmentRequest.from_config(config.sample)
    forecaster = model_forecaster(model, config.sample)
    start = time.perf_counter()
    targets = None
    if layout.count == 1 and (layout.padded_height, layout.padded_width) == context.shape[1:]:
        y_hat = None if alignment.mode == "none" else alignment_target(alignment, context, truth)
        members = forecaster.run(context[None], None if y_hat is None else np.array([y_hat]), [config.seed],
                                 progress)[0]
        layout = None
    else:
        if alignment.mode != "none":
            alignment_target(alignment, context, truth)  # a request that cannot be met fails before any window
        target = None if alignment.mode == "none" else (lambda c, t: alignment_target(alignment, c, t))
        tiled = forecast_tiled(forecaster, layout, context, truth, config.seed, target, progress)
        members, targets = tiled.members, tiled.window_targets
        y_hat = None if targets is None else float(np.mean(targets))
    seconds = time.perf_counter() - start
    return ForecastResult(members=members, context=context, truth=truth,
                          lead_minutes=[10 * (k + 1) for k in range(members.shape[1])], y_hat=y_hat,
                          seconds=seconds, network_evaluations=forecaster.network_evaluations,
                          precision=forecaster.precision, layout=layout, window_targets=targets)


def check_context(model_config, context: np.ndarray, overlap: int, what: str = "the frames") -> TileLayout:
    """Refuse a context the model cannot forecast (not (T_in, H, W) with H, W >= its frame size, or an overlap it
    cannot use); return the windows it is forecast in (one for a frame of the model's size)."""
    t_in = int(model_config.unet.input_shape[0])
    if context.ndim != 3:
        raise InputError(f"the context must be (T, H, W) frames; got shape {context.shape}")
    if len(context) != t_in:
        raise InputError(f"the model expects {t_in} context frames; the input gives {len(context)}")
    return layout_for(model_config, context.shape, overlap, what)


#: models trained on synthetic storms: name → the command that installs a model trained on real radar
SYNTHETIC_MODELS = {"demo": "prediff download weights sevirlr"}


def model_label(model) -> str:
    """The model's name as files and messages show it: an installed name, or a model folder's own name (never the
    path of the machine that ran the forecast)."""
    name = str(model.name)
    return Path(name).name if ("/" in name or "\\" in name) else name


def weights_digest(model) -> str:
    """One SHA-256 for the model's weights: over the component files' SHA-256s ("vae=<hex>" lines, sorted), so
    two forecasts share it exactly when they used the same checkpoint files."""
    if not model.sha256:
        return "none"
    text = "".join(f"{component}={digest}\n" for component, digest in sorted(model.sha256.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def is_synthetic(model) -> bool:
    """Whether the model is the bundled one trained on synthetic storms (judged by its files, not its name)."""
    unet = getattr(model.paths, "unet", None)
    return unet is not None and any(Path(unet).resolve().parent == BUNDLED[name].resolve()
                                    for name in SYNTHETIC_MODELS if name in BUNDLED)


def model_lines(model) -> List[str]:
    """What the terminal says before sampling: the model and its weights' digest (for a model put together from
    checkpoint files, the files); for the demo model, that it knows synthetic storms only, and how to install the
    published model."""
    lines = [f"model {model_label(model)} (weights sha256 {weights_digest(model)[:16]})"]
    if model.name == CUSTOM:
        lines.append("checkpoints: " + ", ".join(f"{option.lstrip('-')} {getattr(model.paths, c) or 'none'}"
                                                 for c, option in OPTION_OF.items()))
    if is_synthetic(model):
        command = next(iter(SYNTHETIC_MODELS.values()))
        lines.append(f"note: the {model_label(model)} model is trained on synthetic storms, not real radar; install "
                     f"the published model with `{command}` and forecast with --model sevirlr")
    return lines


def _without_machine_paths(config: Config) -> Config:
    """The config as stored in a forecast file: the paths of the machine that trained the model left out."""
    train = {name: dataclasses.replace(getattr(config, name), latent_cache=None)
             for name in ("train_vae", "train_diffusion", "train_align")
             if hasattr(getattr(config, name, None), "latent_cache")}
    return dataclasses.replace(config, data=dataclasses.replace(config.data, root=None), **train)


def history_line(command: str, when: Optional[dt.datetime] = None) -> str:
    """A CF `history` entry: the UTC time and the command that wrote the file."""
    when = when or dt.datetime.now(dt.timezone.utc)
    return f"{when:%Y-%m-%dT%H:%M:%SZ}: {command}"


def provenance(model, config: Config, result: ForecastResult, *, source: Path, event: int,
               start: int, command: str = "prediff Python API (prediff.forecast)") -> Dict[str, object]:
    """Global attributes of the forecast file: the model (name, weights digest), the settings used, the
    checkpoints, the model's own config (without machine paths) and a `history` line for `command`."""
    s, aligned = config.sample, result.y_hat is not None
    label = model_label(model)
    source_text = f"PreDiff latent diffusion (MindSpore), model {label}" + \
        (" (trained on synthetic storms, not real radar)" if is_synthetic(model) else "")
    return {
        "source": source_text, "history": history_line(command), "model": label,
        "model_weights_sha256": weights_digest(model),
        "prediff_version": __version__, "sampler": s.sampler, "solver_steps": int(result.network_evaluations),
        "requested_steps": int(s.steps), "eta": float(s.eta), "precision": result.precision,
        "requested_precision": s.precision,
        "alignment": AlignmentRequest.from_config(s).describe(),
        "alignment_target_vil": float(result.y_hat * 255.0) if aligned else "none",
        "guide_scale": float(s.guide_scale) if aligned else 0.0,
        "members_coupled": int(bool(s.couple_members)), "seed": int(config.seed),
        **{f"{c}_{key}": value for c in ("vae", "unet", "align")
           for key, value in _component_source(model, c, used=c != "align" or aligned).items()},
        "input_file": Path(source).name, "input_event": int(event), "input_start_frame": int(start),
        "prediff_config": config_to_yaml(_without_machine_paths(model.config)),
        **tile_attributes(result),
    }


def _component_source(model, component: str, used: bool) -> Dict[str, str]:
    """{"checkpoint": file name, "sha256": its digest} of a network of `model`; "none" for one not used, "in-memory"
    for networks built in the process (`Model.from_networks`: no file)."""
    if not used:
        return {"checkpoint": "none", "sha256": "none"}
    path = getattr(model.paths, component, None)
    if path is None:
        return {"checkpoint": "in-memory", "sha256": "none"}
    return {"checkpoint": Path(path).name, "sha256": model.sha256[component]}


def tile_attributes(result: ForecastResult) -> Dict[str, object]:
    """How a domain larger than the model's frame was forecast (nothing for a single frame)."""
    layout = result.layout
    if layout is None:
        return {}
    rows, cols = layout.grid
    attrs = {"tile_windows": f"{rows} x {cols}", "tile_window_px": int(layout.window),
             "tile_overlap_px": int(layout.overlap)}
    if result.window_targets is not None:  # alignment_target_vil is then their mean
        attrs["alignment_target_vil_windows"] = [float(v * 255.0) for v in result.window_targets]
    return attrs


def reference_time_of(context_times, reference: Optional[dt.datetime], source: Path) -> dt.datetime:
    """The forecast reference time = time of the last context frame."""
    if context_times:
        return context_times[-1]
    if reference is not None:
        return reference
    raise InputError(f"{source} carries no timestamps (not in a SEVIR catalog tree and no time_utc); pass "
                     "--reference-time YYYY-MM-DDTHH:MM (UTC of the last context frame)")


# ----------------------------------------------------------------------------------------------------------------
# The forecast job that `prediff sample`, `prediff watch`, `prediff.forecast` and `Model.forecast` share.


@dataclass
class ForecastProduct:
    """A forecast ready to be written: `members` (M, T_out, H, W), `context` (T_in, H, W) and `truth` (or None) on
    0–1 on the output grid `grid` (None without a map grid), rows as `orientation` says; `attrs` the provenance of
    the NetCDF; `result` the forecast on the model's grid, `settings` the resolved config."""

    result: ForecastResult
    settings: Config
    reference_time: dt.datetime
    members: np.ndarray
    context: np.ndarray
    truth: Optional[np.ndarray]
    grid: object
    orientation: object
    attrs: dict
    windows: int


def check_output_grid(output_grid: str) -> None:
    """Refuse an output grid other than "model" or "input", naming the valid ones."""
    if output_grid not in OUTPUT_GRIDS:
        raise InputError(f"unknown output grid {output_grid!r}; valid output grids: {', '.join(OUTPUT_GRIDS)}")


def forecast_radar(model, radar: RadarInput, settings: Config, *, reference_time: Optional[dt.datetime] = None,
                   output_grid: str = "model", progress_factory: Optional[Callable[..., Callable]] = None,
                   notify: Optional[Callable[[str], None]] = None,
                   command: Optional[str] = None) -> ForecastProduct:
    """Check that `model` can forecast `radar` with `settings`, then forecast it (eqs. 1–4 of the paper through
    `run_forecast`) and place the members on the output grid.

    Every refusal happens before any sampling: an output grid other than "model" or "input", frames the model
    cannot take (`check_context`), alignment without an alignment network, `align_oracle` without truth, bf16
    where it cannot run, and an input without usable times and no `reference_time`. `notify` receives the lines
    to show before sampling (how the input was read, the model); `progress_factory(total, windows=n)` returns the
    callable advanced once per solver step; `command` goes into the file's history."""
    check_output_grid(output_grid)
    s = settings.sample
    layout = check_context(model.config, radar.context, s.tile_overlap, what=f"{radar.source}: the frames")
    if s.align != "none" and not model.has_align:
        model.network("align")  # raises the one line that says why the model has none
    if s.align_oracle is not None and radar.truth is None:
        raise InputError("--align-oracle needs the truth frames, but the input has none after the context")
    check_precision_request(s.precision)
    reference = reference_time_of(radar.context_times, reference_time, radar.source)
    for line in radar.notes + model_lines(model):
        if notify is not None:
            notify(line)
    setup_runtime(settings.device, settings.seed)
    progress = None
    if progress_factory is not None:
        evaluations = len(solver_timesteps(s.sampler, s.steps, model.config.diffusion.timesteps))
        calls = -(-s.samples // (s.member_batch or s.samples))
        progress = progress_factory(evaluations * calls * layout.count, windows=layout.count)
    result = run_forecast(model, settings, radar.context, radar.truth, progress)
    attrs = provenance(model, settings, result, source=radar.source, event=radar.event, start=radar.start,
                       **({} if command is None else {"command": command}))
    members, context, truth, grid = output_fields(result.members, radar.context, radar.truth, radar.grid,
                                                  radar.placement, output_grid)
    return ForecastProduct(result=result, settings=settings, reference_time=reference, members=members,
                           context=context, truth=truth, grid=grid, attrs=attrs, windows=layout.count,
                           orientation=written_orientation(radar.orientation, radar.grid, output_grid))


def as_radar(context, truth=None, reference_time: Optional[dt.datetime] = None, scale: Optional[str] = None,
             variable: str = "vil") -> RadarInput:
    """The API's `context` as a `RadarInput`: one already read, an xarray object read as a NetCDF file is, or a
    NumPy array (T, H, W) whose `scale` is said ("0-1", "digital", "kg m-2")."""
    if isinstance(context, RadarInput):
        return context
    if hasattr(context, "dims") and hasattr(context, "attrs"):  # an xarray DataArray or Dataset
        return read_radar_input(context, variable=variable)
    if scale not in ARRAY_SCALES:
        raise InputError(f"a NumPy array carries no units: give its scale, scale='0-1', 'digital' (SEVIR 0-255) or "
                         f"'kg m-2' (got {scale!r}); or pass an xarray DataArray with a units attribute")
    frames = np.asarray(context)
    if frames.ndim != 3 or frames.dtype.kind not in "uif":
        raise InputError(f"context must be (T, H, W) numbers (frames oldest first, row 0 north), got shape "
                         f"{frames.shape} of {frames.dtype}")
    kind = ARRAY_SCALES[scale]
    context = to_model_scale(frames, kind, "the context array", hint=f" with scale={scale!r}")
    if truth is not None:
        truth = to_model_scale(np.asarray(truth), kind, "the truth array", hint=f" with scale={scale!r}")
    times = None
    if reference_time is not None:
        times = [reference_time - dt.timedelta(minutes=10 * k) for k in range(len(frames) - 1, -1, -1)]
    return RadarInput(context=context, truth=truth, context_times=times, grid=None, source="array", event=0,
                      start=0)


def forecast(model, context, *, samples: Optional[int] = None, sampler: Optional[str] = None,
             steps: Optional[int] = None, eta: Optional[float] = None, align: Optional[str] = None,
             align_target: Optional[float] = None, align_factor: Optional[float] = None,
             align_oracle: Optional[float] = None, guide_scale: Optional[float] = None,
             couple_members: Optional[bool] = None, member_batch: Optional[int] = None, seed: Optional[int] = None,
             precision: Optional[str] = None,
             thresholds: Optional[Sequence[float]] = None, config: Optional[str] = None, sets: Sequence[str] = (),
             truth=None, scale: Optional[str] = None, variable: str = "vil", tile_overlap: Optional[int] = None,
             reference_time: Optional[dt.datetime] = None, output_grid: str = "model",
             progress: Optional[Callable[[], None]] = None):
    """An ensemble forecast as an `xarray.Dataset` with the variables, coordinates and attributes of the NetCDF
    that `prediff sample` writes.

    `context` is a `RadarInput` (from `read_radar`); an xarray DataArray or Dataset (`variable` in it), read as a
    NetCDF file is (units, dimensions, times and map grid from its metadata); or a NumPy array (T_in, H, W), oldest
    frame first, row 0 north, 10 minutes apart, whose `scale` must be said: "0-1", "digital" (SEVIR 0–255) or
    "kg m-2" (values outside it are refused). Without times in the input, `reference_time` (UTC of the last frame)
    is needed; `truth` (same scale) only for `align_oracle`. `output_grid`: "model" (the model's 3 km grid,
    north-up) or "input" (resampled back onto the input's own map grid, rows running as the input's). Frames
    larger than the model's 128 pixels (on the model's grid) are forecast in 128 x 128 windows overlapping by at
    least `tile_overlap` pixels (default: the model's `sample.tile_overlap`) and blended."""
    check_output_grid(output_grid)  # before the context is read: a bad name is refused as such
    radar = as_radar(context, truth, reference_time, scale, variable)
    values = sample_values(samples=samples, sampler=sampler, steps=steps, eta=eta, align=align,
                           align_target=align_target, align_factor=align_factor, align_oracle=align_oracle,
                           guide_scale=guide_scale, couple_members=couple_members, precision=precision)
    values.update({k: v for k, v in (("sample.member_batch", member_batch), ("seed", seed),
                                     ("sample.tile_overlap", tile_overlap)) if v is not None})
    if thresholds is not None:  # digital VIL levels of the exceedance probabilities
        values["sample.thresholds"] = tuple(float(v) for v in thresholds)
    settings = forecast_config(model.config, config, sets, values)
    product = forecast_radar(model, radar, settings, reference_time=reference_time, output_grid=output_grid,
                             progress_factory=None if progress is None else (lambda total, windows=1: progress))
    return forecast_dataset(product.members, reference_time=product.reference_time,
                            lead_minutes=product.result.lead_minutes, context=product.context, grid=product.grid,
                            attrs=product.attrs, thresholds=settings.sample.thresholds,
                            orientation=product.orientation)
