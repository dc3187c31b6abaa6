"""From context frames and a loaded `Model` to an ensemble forecast (`prediff sample`, `score --split`, the API).

1. Encode the context once (posterior mean), repeat it for the N members.
2. Denoise the members in batches of `sample.member_batch` (`EnsembleSampler`), each sequence with the noise of
   its own seed, optionally steered toward an anticipated mean intensity (knowledge alignment).
3. Decode the target latents frame by frame → (N, 6, H, W) on 0–1.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
from mindspore import Tensor

import prediff_models.diffusion as D
from prediff import __version__
from prediff.config import Config, SampleConfig, config_to_yaml
from prediff.errors import InputError
from prediff.heap import HeapTrimmer

from .latents import jit_decoder, jit_encoder, split_moments
from .precision import forecast_precision
from .sampler import EnsembleSampler, MemberNoise


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
            progress: Optional[Callable[[], None]] = None) -> np.ndarray:
        """contexts (B, T_in, H, W), y_hat (B,) on 0–1 or None, seeds (B,) → members (B, M, T_out, H, W) on 0–1."""
        if self.aligned and y_hat is None:
            raise InputError("aligned sampling needs an anticipated intensity")
        with HeapTrimmer():  # the first call compiles the coding and sampling graphs
            return self._run(contexts, y_hat, seeds, progress)

    def _run(self, contexts, y_hat, seeds, progress) -> np.ndarray:
        b, m = contexts.shape[0], self.sample.samples
        cond = self.context_latents(contexts)
        generators = [np.random.default_rng(int(seed)) for seed in seeds]
        latents = np.zeros((b, m) + self.target_shape, np.float32)
        for call in self.calls(b):
            rows = np.concatenate([np.repeat(cond[i:i + 1], n, axis=0) for i, _, n in call])
            y = None if y_hat is None else np.concatenate([np.full((n, 1), y_hat[i], np.float32) for i, _, n in call])
            noise = MemberNoise([(generators[i], n) for i, _, n in call])
            out = self.sampler.sample(rows, noise, y, self.target_shape, progress)
            offset = 0
            for i, first, n in call:
                latents[i, first:first + n] = out[offset:offset + n]
                offset += n
        frames = self.decode(Tensor(latents.reshape((b * m,) + self.target_shape))).asnumpy()[..., 0]
        return frames.reshape((b, m) + frames.shape[1:])


def run_forecast(model, config: Config, context: np.ndarray, truth: Optional[np.ndarray],
                 progress=None) -> ForecastResult:
    """One context (T_in, H, W) → a `config.sample.samples`-member forecast with the noise of `config.seed`."""
    alignment = AlignmentRequest.from_config(config.sample)
    y_hat = None if alignment.mode == "none" else alignment_target(alignment, context, truth)
    forecaster = Forecaster(model, config.sample)
    start = time.perf_counter()
    members = forecaster.run(context[None], None if y_hat is None else np.array([y_hat]), [config.seed],
                             progress)[0]
    seconds = time.perf_counter() - start
    return ForecastResult(members=members, context=context, truth=truth,
                          lead_minutes=[10 * (k + 1) for k in range(members.shape[1])], y_hat=y_hat,
                          seconds=seconds, network_evaluations=forecaster.network_evaluations,
                          precision=forecaster.precision)


def provenance(model, config: Config, result: ForecastResult, *, source: Path, event: int,
               start: int) -> Dict[str, object]:
    """Global attributes of the forecast file: the settings used, the checkpoints and the model's own config."""
    s, aligned = config.sample, result.y_hat is not None
    return {
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
        "prediff_config": config_to_yaml(model.config),
    }


def reference_time_of(context_times, reference: Optional[dt.datetime], source: Path) -> dt.datetime:
    """The forecast reference time = time of the last context frame."""
    if context_times:
        return context_times[-1]
    if reference is not None:
        return reference
    raise InputError(f"{source} carries no timestamps (not in a SEVIR catalog tree and no time_utc); pass "
                     "--reference-time YYYY-MM-DDTHH:MM (UTC of the last context frame)")
