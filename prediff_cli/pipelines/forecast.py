"""From a radar file and checkpoints to an ensemble forecast (`prediff sample`).

1. Read the 7 context frames (and the truth, when the file has it).
2. Load the VAE, the UNet (its EMA weights when the checkpoint has them) and, for aligned sampling, the alignment
   network; check that their shapes fit together.
3. Encode the context once (posterior mean), repeat it for the N members.
4. Denoise all members as one batch (`EnsembleSampler`), optionally steered toward an anticipated mean intensity.
5. Decode the target latents frame by frame → (N, 6, H, W) on 0–1.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np

from prediff_cli import __version__
from prediff_cli.config import Config, config_to_yaml
from prediff_cli.errors import InputError
from prediff_cli.io.checkpoint import Checkpoint, file_sha256, load_checkpoint, load_weights, weights_sha256

DEMO_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo"
ALIGN_CHOICES = ("none", "avg_x")


@dataclass
class Checkpoints:
    vae: Optional[Path] = None
    unet: Optional[Path] = None
    align: Optional[Path] = None


def resolve_checkpoints(given: Checkpoints, need_align: bool) -> Checkpoints:
    """Fill missing paths from the bundled demo model; explain what is missing otherwise."""
    demo = Checkpoints(DEMO_DIR / "vae.ckpt", DEMO_DIR / "unet.ckpt", DEMO_DIR / "align.ckpt")
    out = Checkpoints(given.vae or demo.vae, given.unet or demo.unet, given.align or demo.align)
    for name, path in (("--vae", out.vae), ("--unet", out.unet)) + ((("--align-net", out.align),) if need_align
                                                                     else ()):
        if not Path(path).is_file():
            source = "the bundled demo model is not installed" if path in (demo.vae, demo.unet, demo.align) \
                else f"{path} does not exist"
            raise InputError(f"no checkpoint for {name}: {source}; pass {name} CKPT (from `prediff train-*` or "
                             "`prediff convert-weights`)")
    return out


@dataclass
class Networks:
    vae: object
    unet: object
    align: Optional[object]
    config: Config
    hashes: Dict[str, str] = field(default_factory=dict)


def _build(ckpt: Checkpoint, source: Path, prefer_ema: bool = True):
    import models

    net = models.build(ckpt.component, ckpt.model_kwargs)
    load_weights(net, ckpt.weights(prefer_ema), source=str(source))
    net.set_train(False)
    return net


def check_vae_pairing(vae_ckpt: Checkpoint, vae_path: Path, vae_sha256: str, other: Checkpoint,
                      other_path: Path, option: str) -> None:
    """Refuse a latent network (UNet or alignment) with a VAE it was not trained on.

    The latent trainers record their frozen VAE (`vae_checkpoint` in the checkpoint's meta: the file's SHA-256 and
    the SHA-256 of the weights used, `weights_sha256`). A VAE matches when either digest does; a checkpoint without
    the weights' digest (older files, converted official weights) cannot be checked and passes.
    """
    recorded = other.meta.get("vae_checkpoint")
    if not isinstance(recorded, dict) or not recorded.get("weights_sha256"):
        return  # without the weights' digest an exported copy of the right VAE cannot be told from another VAE
    if vae_sha256 == recorded.get("sha256") or weights_sha256(vae_ckpt.weights()) == recorded["weights_sha256"]:
        return
    raise InputError(f"{option} {other_path} was trained with another VAE ({recorded.get('path', 'unknown')}) than "
                     f"--vae {vae_path}; its forecasts would be meaningless. Pass the matching --vae, or "
                     "--allow-mismatch to sample anyway")


def load_networks(paths: Checkpoints, need_align: bool, allow_mismatch: bool = False) -> Networks:
    """Build the networks from their checkpoints; the UNet checkpoint's config is the forecast's config.

    Unless `allow_mismatch`, the UNet and the alignment network must have been trained on this VAE."""
    from prediff_cli.config import config_from_dict

    vae_ckpt = load_checkpoint(paths.vae, component="vae")
    unet_ckpt = load_checkpoint(paths.unet, component="unet")
    hashes = {"vae": file_sha256(paths.vae), "unet": file_sha256(paths.unet)}
    if not allow_mismatch:
        check_vae_pairing(vae_ckpt, paths.vae, hashes["vae"], unet_ckpt, paths.unet, "--unet")
    latent = int(vae_ckpt.model_kwargs["latent_channels"])
    in_shape = unet_ckpt.model_kwargs["input_shape"]
    if in_shape[-1] != latent:
        raise InputError(f"--unet {paths.unet} expects {in_shape[-1]} latent channels but --vae {paths.vae} "
                         f"produces {latent}")
    config = config_from_dict(unet_ckpt.config) if unet_ckpt.config else None
    if config is None:
        raise InputError(f"{paths.unet} carries no config; re-save it with this version of prediff")
    align = None
    if need_align:
        align_ckpt = load_checkpoint(paths.align, component="align")
        if not allow_mismatch:
            check_vae_pairing(vae_ckpt, paths.vae, hashes["vae"], align_ckpt, paths.align, "--align-net")
        if list(align_ckpt.model_kwargs["input_shape"]) != list(unet_ckpt.model_kwargs["target_shape"]):
            raise InputError(f"--align-net {paths.align} takes latents {align_ckpt.model_kwargs['input_shape']} "
                             f"but the UNet produces {unet_ckpt.model_kwargs['target_shape']}")
        align = _build(align_ckpt, paths.align)
        hashes["align"] = file_sha256(paths.align)
    return Networks(vae=_build(vae_ckpt, paths.vae), unet=_build(unet_ckpt, paths.unet), align=align,
                    config=config, hashes=hashes)


@dataclass
class AlignmentRequest:
    mode: str = "none"  # "none" or "avg_x"
    target: Optional[float] = None  # anticipated mean VIL of the target frames, digital 0–255
    factor: Optional[float] = None  # anticipated mean = factor × mean of the last context frame
    oracle_factor: Optional[float] = None  # evaluation only: factor × the true future mean (the paper's choice)

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


class Forecaster:
    """Encoder, compiled sampler and decoder built once; `run` forecasts many contexts, each with N members, in
    batches of `member_batch` sequences (0 = everything at once)."""

    def __init__(self, nets: Networks, *, sampler: str, steps: int, eta: float, aligned: bool, guide_scale: float,
                 couple_members: bool):
        from prediff_cli.pipelines.latents import jit_decoder, jit_encoder
        from prediff_cli.pipelines.sampler import EnsembleSampler
        import models.diffusion as D

        if aligned and nets.align is None:
            raise InputError("aligned sampling needs an alignment network (--align-net)")
        d = nets.config.diffusion
        self.nets = nets
        self.schedule = D.make_schedule(d.timesteps, d.beta_schedule, d.linear_start, d.linear_end, d.cosine_s)
        self.encode, self.decode = jit_encoder(nets.vae), jit_decoder(nets.vae, d.scale_factor)
        self.sampler = EnsembleSampler(nets.unet, self.schedule, sampler=sampler, steps=steps, eta=eta,
                                       align_net=nets.align if aligned else None, guide_scale=guide_scale,
                                       couple_members=couple_members)
        self.aligned = aligned
        self.target_shape = tuple(nets.config.unet.target_shape)

    @property
    def network_evaluations(self) -> int:
        return self.sampler.network_evaluations

    def context_latents(self, contexts: np.ndarray) -> np.ndarray:
        """(B, T_in, H, W) on 0–1 → posterior means (B, T_in, h, w, L) (spec §4.2: the context uses the mean)."""
        from mindspore import Tensor
        from prediff_cli.pipelines.latents import split_moments

        return split_moments(self.encode(Tensor(contexts[..., None].astype(np.float32))))[0].asnumpy()

    def run(self, contexts: np.ndarray, samples: int, y_hat: Optional[np.ndarray], rng: np.random.Generator,
            member_batch: int = 0, progress: Optional[Callable[[], None]] = None) -> np.ndarray:
        """contexts (B, T_in, H, W), y_hat (B,) on 0–1 or None → members (B, M, T_out, H, W) on 0–1."""
        from mindspore import Tensor

        b = contexts.shape[0]
        cond = np.repeat(self.context_latents(contexts), samples, axis=0)  # (B·M, ...), members adjacent
        y = None if y_hat is None else np.repeat(np.asarray(y_hat, np.float32).reshape(b, 1), samples, axis=0)
        chunk = member_batch or (b * samples)
        latents = []
        for s in range(0, b * samples, chunk):
            part = slice(s, min(s + chunk, b * samples))
            latents.append(self.sampler.sample(cond[part], rng, None if y is None else y[part], self.target_shape,
                                               progress))
        frames = self.decode(Tensor(np.concatenate(latents))).asnumpy()[..., 0]
        return frames.reshape((b, samples) + frames.shape[1:])


def run_forecast(nets: Networks, context: np.ndarray, truth: Optional[np.ndarray], *, samples: int, sampler: str,
                 steps: int, eta: float, alignment: AlignmentRequest, guide_scale: float, couple_members: bool,
                 seed: int, member_batch: int = 0, progress=None) -> ForecastResult:
    """One context (T_in, H, W) → an N-member forecast."""
    y_hat = None if alignment.mode == "none" else alignment_target(alignment, context, truth)
    forecaster = Forecaster(nets, sampler=sampler, steps=steps, eta=eta, aligned=y_hat is not None,
                            guide_scale=guide_scale, couple_members=couple_members)
    start = time.perf_counter()
    members = forecaster.run(context[None], samples, None if y_hat is None else np.array([y_hat]),
                             np.random.default_rng(seed), member_batch, progress)[0]
    seconds = time.perf_counter() - start
    return ForecastResult(members=members, context=context, truth=truth,
                          lead_minutes=[10 * (k + 1) for k in range(members.shape[1])], y_hat=y_hat,
                          seconds=seconds, network_evaluations=forecaster.network_evaluations)


def provenance(nets: Networks, paths: Checkpoints, *, sampler: str, steps: int, eta: float,
               alignment: AlignmentRequest, y_hat: Optional[float], guide_scale: float, couple_members: bool,
               seed: int, source: Path, event: int, start: int, evaluations: int) -> Dict[str, object]:
    """Global attributes of the forecast file."""
    return {
        "prediff_version": __version__, "sampler": sampler, "solver_steps": int(evaluations),
        "requested_steps": int(steps), "eta": float(eta), "alignment": alignment.describe(),
        "alignment_target_vil": float(y_hat * 255.0) if y_hat is not None else "none",
        "guide_scale": float(guide_scale) if y_hat is not None else 0.0,
        "members_coupled": int(bool(couple_members)), "seed": int(seed),
        "vae_checkpoint": Path(paths.vae).name, "vae_sha256": nets.hashes["vae"],
        "unet_checkpoint": Path(paths.unet).name, "unet_sha256": nets.hashes["unet"],
        "align_checkpoint": Path(paths.align).name if nets.align is not None else "none",
        "align_sha256": nets.hashes.get("align", "none"),
        "input_file": Path(source).name, "input_event": int(event), "input_start_frame": int(start),
        "prediff_config": config_to_yaml(nets.config),
    }


def reference_time_of(context_times, reference: Optional[dt.datetime], source: Path) -> dt.datetime:
    """The forecast reference time = time of the last context frame."""
    if context_times:
        return context_times[-1]
    if reference is not None:
        return reference
    raise InputError(f"{source} carries no timestamps (not in a SEVIR catalog tree and no time_utc); pass "
                     "--reference-time YYYY-MM-DDTHH:MM (UTC of the last context frame)")
