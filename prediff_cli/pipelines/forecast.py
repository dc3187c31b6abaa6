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
from typing import Callable, Dict, List, Optional

import numpy as np
from mindspore import Tensor

import prediff_models.diffusion as D
from prediff import __version__
from prediff.config import Config, SampleConfig, config_to_yaml
from prediff.errors import InputError
from prediff.heap import HeapTrimmer

from .latents import jit_decoder, jit_encoder, split_moments
from .model import CUSTOM, OPTION_OF
from .model_store import BUNDLED
from .precision import forecast_precision
from .sampler import EnsembleSampler, LatentCut, MemberNoise
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
        "vae_checkpoint": Path(model.paths.vae).name, "vae_sha256": model.sha256["vae"],
        "unet_checkpoint": Path(model.paths.unet).name, "unet_sha256": model.sha256["unet"],
        "align_checkpoint": Path(model.paths.align).name if aligned else "none",
        "align_sha256": model.sha256["align"] if aligned else "none",
        "input_file": Path(source).name, "input_event": int(event), "input_start_frame": int(start),
        "prediff_config": config_to_yaml(_without_machine_paths(model.config)),
        **tile_attributes(result),
    }


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
