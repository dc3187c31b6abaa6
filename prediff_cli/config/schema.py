"""Typed, frozen configuration of every prediff command.

One `Config` object describes a whole experiment: the dataset, the three networks (as the *official*
constructor arguments, so that published PyTorch weights map one to one), the diffusion schedule, the
three trainers, the sampler and the scorer. Defaults are the paper's SEVIR-LR configuration (official
`prediff_sevirlr_v1.yaml`); the presets `tiny`, `small`, `demo` and `sevirlr` override what differs.

Model sections are converted to plain dicts with `model_kwargs()`; that dict is exactly what
`models.build(component, kwargs)` takes and what checkpoints embed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import typing
from typing import Literal, Optional, Tuple

# ----------------------------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class DataConfig:
    """SEVIR-LR dataset layout and sequence cutting (official `sevir_dataloader.py`)."""

    root: Optional[str] = None  # dataset root holding CATALOG.csv and data/vil/YEAR/*.h5
    img_size: int = 128  # frame height = width, pixels (3 km each)
    raw_seq_len: int = 25  # frames per stored event (10-minute steps)
    in_len: int = 7  # context frames
    out_len: int = 6  # target frames
    stride: int = 6  # frames between the starts of two sequences of one event
    train_test_split_date: str = "2019-06-01"  # test = events strictly after this date (UTC midnight)
    val_ratio: float = 0.1  # fraction of train+val sequences drawn for validation
    split_seed: int = 0  # seed of the random validation draw
    shuffle_seed: int = 1  # seed of the event-table shuffle of the train+val pool
    aug_mode: Literal["0", "1", "2"] = "2"  # "0" none, "1" flips + free rotation, "2" flips + 90° rotations

    @property
    def seq_len(self) -> int:
        return self.in_len + self.out_len


# ----------------------------------------------------------------------------------------------------------------
# networks: official constructor arguments


@dataclass(frozen=True)
class VAEConfig:
    """`AutoencoderKL` constructor arguments (official `vae_sevirlr_v1.yaml`)."""

    in_channels: int = 1
    out_channels: int = 1
    down_block_types: Tuple[str, ...] = ("DownEncoderBlock2D",) * 4
    up_block_types: Tuple[str, ...] = ("UpDecoderBlock2D",) * 4
    block_out_channels: Tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    act_fn: Literal["silu"] = "silu"
    latent_channels: int = 64
    norm_num_groups: int = 32


@dataclass(frozen=True)
class _CuboidNetworkConfig:
    """Constructor arguments that the UNet and the alignment encoder share: both are stacks of the same official
    Earthformer cuboid-attention blocks, so their layer, weight-initialisation and timestep-embedding settings are
    listed once, here. Shapes are (T, H, W, C).

    `input_shape`, `base_units` and `depth` have no default here: each network's section re-declares them with its
    own, which keeps their place at the head of the section (in `to_plain`, YAML and checkpoints); its other
    arguments follow these."""

    input_shape: Tuple[int, ...]
    base_units: int
    depth: Tuple[int, ...]
    block_units: Optional[Tuple[int, ...]] = None  # widths of the levels (None: base_units × downsample^(level·alpha))
    scale_alpha: float = 1.0
    num_heads: int = 4
    attn_drop: float = 0.1
    proj_drop: float = 0.1
    ffn_drop: float = 0.1
    downsample: int = 2
    downsample_type: Literal["patch_merge"] = "patch_merge"
    num_global_vectors: int = 0
    global_dim_ratio: int = 1
    ffn_activation: Literal["gelu"] = "gelu"
    gated_ffn: bool = False
    norm_layer: Literal["layer_norm"] = "layer_norm"
    padding_type: Literal["zeros"] = "zeros"
    checkpoint_level: int = 0
    pos_embed_type: Literal["t+h+w"] = "t+h+w"
    use_relative_pos: bool = True
    self_attn_use_final_proj: bool = True
    attn_linear_init_mode: str = "0"
    ffn_linear_init_mode: str = "0"
    ffn2_linear_init_mode: str = "2"
    attn_proj_linear_init_mode: str = "2"
    conv_init_mode: str = "0"
    down_linear_init_mode: str = "0"
    global_proj_linear_init_mode: str = "2"
    norm_init_mode: str = "0"
    time_embed_channels_mult: int = 4
    time_embed_use_scale_shift_norm: bool = False
    time_embed_dropout: float = 0.0
    # the timestep sinusoid's frequencies: "official" (PyTorch's float32 exp) or "mindearth" (MindSpore's float32 exp,
    # as MindEarth's port computes them; set by a MindEarth YAML, see docs/mindearth.md)
    timestep_frequencies: Literal["official", "mindearth"] = "official"


@dataclass(frozen=True)
class UNetConfig(_CuboidNetworkConfig):
    """`CuboidTransformerUNet` constructor arguments (`model.latent_model`)."""

    input_shape: Tuple[int, ...] = (7, 16, 16, 64)
    base_units: int = 256
    depth: Tuple[int, ...] = (4, 4)
    target_shape: Tuple[int, ...] = (6, 16, 16, 64)
    upsample_type: Literal["upsample"] = "upsample"
    upsample_kernel_size: int = 3
    block_attn_patterns: Tuple[str, ...] = ("axial", "axial")
    use_global_vector_ffn: bool = False
    use_global_self_attn: bool = True
    separate_global_qkv: bool = True
    up_linear_init_mode: str = "0"
    unet_res_connect: bool = True


@dataclass(frozen=True)
class AlignConfig(_CuboidNetworkConfig):
    """`NoisyCuboidTransformerEncoder` constructor arguments (`model.align.model_args`)."""

    input_shape: Tuple[int, ...] = (6, 16, 16, 64)
    base_units: int = 128
    depth: Tuple[int, ...] = (1, 1)
    out_channels: int = 1
    block_attn_patterns: str = "axial"
    use_global_vector_ffn: bool = True
    use_global_self_attn: bool = False
    separate_global_qkv: bool = False
    use_inter_ffn: bool = True
    hierarchical_pos_embed: bool = False
    pool: Literal["attention"] = "attention"
    readout_seq: bool = True
    out_len: int = 6


@dataclass(frozen=True)
class DiffusionConfig:
    """Latent-diffusion settings (official `model.diffusion`)."""

    timesteps: int = 1000
    beta_schedule: Literal["linear", "sqrt_linear", "cosine"] = "linear"  # "linear" is linear in sqrt(beta)
    linear_start: float = 1e-4
    linear_end: float = 2e-2
    cosine_s: float = 8e-3
    parameterization: Literal["eps"] = "eps"
    learn_logvar: bool = True  # learned per-timestep log-variance in the training loss (official `learn_logvar`)
    logvar_init: float = 0.0
    scale_factor: float = 1.0  # latent scale applied to target latents


# ----------------------------------------------------------------------------------------------------------------
# training


#: the `recompute` level that differentiates the UNet block by block (train_diffusion only); 1 and 2 are MindSpore's
#: recomputation marks
BLOCKWISE_RECOMPUTE = 3


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by the three trainers (docs/training.md)."""

    steps: int = 1000  # total optimizer steps
    micro_batch_size: int = 2  # sequences (or frames, for the VAE) per forward pass
    total_batch_size: int = 64  # effective batch per optimizer step; accumulation = total / (micro * workers)
    lr: float = 1e-3
    betas: Tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # fraction of steps of linear warm-up
    warmup_min_lr_ratio: float = 0.1  # warm-up starts at this fraction of lr
    min_lr_ratio: float = 1e-3  # cosine decays to this fraction of lr
    grad_clip: float = 1.0  # global-norm clipping; 0 disables
    log_every: int = 10  # optimizer steps between metrics.jsonl lines
    val_every: int = 100  # optimizer steps between validations
    val_batches: int = 8  # micro-batches per validation (0 = whole val split)
    ckpt_every: int = 100  # optimizer steps between last.ckpt saves
    keep_ckpts: int = 2  # rotated older copies of last.ckpt kept as last-<step>.ckpt
    ema_decay: float = 0.0  # 0 disables the exponential moving average of the weights
    # activation recomputation in the backward pass (prediff_models.recompute): 0 off, 1 attention/FFN layers and
    # VAE ResNet blocks, 2 also the convolution blocks; less memory for one more forward of those cells (on GPU and
    # Ascend; MindSpore's CPU backend does not save memory with them); 3 (train_diffusion only) differentiates the
    # UNet one block at a time in its own small graphs, which does save memory on CPU (training/blockwise.py)
    recompute: int = 0
    # with recompute 3: keep every UNet block's convolution and linear-layer outputs from the forward pass for its
    # backward graph instead of computing them again (prediff_models.kernels.stash); more memory, less time
    keep_linear_outputs: bool = False
    # latent trainers: a directory where the frozen VAE's encodings of the training frames are kept once computed
    # (pipelines/training/encoded_batches.py), so later epochs skip the encoder; needs aug_mode "0" or "2"; null off
    latent_cache: Optional[str] = None
    # VAE-only loss terms (ignored by the latent trainers)
    kl_weight: float = 1e-6
    disc_start: int = 50001  # optimizer step at which the PatchGAN discriminator switches on
    disc_weight: float = 0.5


def _vae_train_default() -> TrainConfig:
    return TrainConfig(micro_batch_size=16, total_batch_size=512, lr=5e-6, betas=(0.5, 0.9), weight_decay=0.0)


def _diffusion_train_default() -> TrainConfig:
    return TrainConfig(ema_decay=0.9999)


def _align_train_default() -> TrainConfig:
    return TrainConfig(micro_batch_size=32, total_batch_size=128)


# ----------------------------------------------------------------------------------------------------------------
# forecasting and scoring


# the one list of sampler and alignment names: the config types, the CLI choices and the sampler code use these
SamplerName = Literal["ddim", "ddpm", "dpmpp", "dpmpp3m", "sasolver"]
AlignMode = Literal["none", "avg_x"]
Precision = Literal["auto", "fp32", "bf16"]
SAMPLERS: Tuple[str, ...] = typing.get_args(SamplerName)
ALIGN_MODES: Tuple[str, ...] = typing.get_args(AlignMode)
PRECISIONS: Tuple[str, ...] = typing.get_args(Precision)

# solver steps taken when a config's sampler is changed without also setting the steps (ddpm runs every timestep)
DEFAULT_SOLVER_STEPS = {"ddim": 50, "dpmpp": 20, "ddpm": 1000, "dpmpp3m": 4, "sasolver": 5}


@dataclass(frozen=True)
class SampleConfig:
    """Ensemble forecasting (`prediff sample`)."""

    samples: int = 8  # ensemble members, denoised as one batch
    sampler: SamplerName = "ddim"
    steps: int = 50  # solver steps (ddpm always uses every timestep)
    eta: float = 0.0  # DDIM / DPM-Solver++ / SA-Solver noise: 0 deterministic (ODE), 1 stochastic (DDPM-like / SDE)
    align: AlignMode = "none"
    align_target: Optional[float] = None  # anticipated mean VIL of the target frames, digital 0-255
    align_factor: Optional[float] = None  # or: anticipated mean = factor x mean of the last context frame
    align_oracle: Optional[float] = None  # or (evaluation only): factor x the true future mean (the paper used 2)
    guide_scale: float = 50.0
    couple_members: bool = False  # official behaviour: one 2-norm over all members couples their guidance
    member_batch: int = 0  # members per UNet call (0 = all at once)
    # linear layers and convolutions of the UNet and the VAE: bf16 operands with float32 accumulation ("bf16", CPUs
    # with AVX512_BF16), float32 ("fp32"), or bf16 where the CPU has it and its self-check passes ("auto")
    precision: Precision = "auto"
    # frames larger than the model's (128 x 128) are forecast in windows of that size overlapping by at least this
    # many pixels (a multiple of the VAE's 8-pixel downscale, at most half a window), blended smoothly
    tile_overlap: int = 32
    gif_members: int = 8  # pictures: every member as a panel up to this many, else all as a strip of thumbnails
    thresholds: Tuple[float, ...] = (16, 74, 133, 160, 181, 219)  # exceedance probabilities: digital VIL, >=


@dataclass(frozen=True)
class ScoreConfig:
    """Verification settings (`prediff score`, docs/scoring.md)."""

    thresholds: Tuple[float, ...] = (16, 74, 133, 160, 181, 219)  # digital VIL, compared with >=
    eps: float = 1e-4
    pools: Tuple[int, ...] = (4, 16)  # max-pool sizes of the pooled CSI / CRPS
    fss_scales: Tuple[int, ...] = (1, 4, 16)  # neighbourhood widths in pixels
    fss_thresholds: Tuple[float, ...] = (74, 133, 181)
    batch_size: int = 4  # sequences per model call in whole-split evaluation
    baselines: Tuple[str, ...] = ("persistence", "optical_flow", "steps")
    rank_min: float = 16.0  # digital VIL: rank histogram leaves out pixels where truth and all members are below
    resamples: int = 1000  # bootstrap draws (over events) of the confidence intervals
    interval: float = 0.95  # level of the confidence intervals


# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """A whole prediff experiment."""

    preset: str = "sevirlr"  # name of the preset this config started from (informational)
    seed: int = 0
    device: Literal["auto", "cpu", "gpu", "ascend"] = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train_vae: TrainConfig = field(default_factory=_vae_train_default)
    train_diffusion: TrainConfig = field(default_factory=_diffusion_train_default)
    train_align: TrainConfig = field(default_factory=_align_train_default)
    sample: SampleConfig = field(default_factory=SampleConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)

    def model_kwargs(self, component: str) -> dict:
        """Official constructor arguments of `component` ("vae", "unet" or "align") as a JSON-ready dict."""
        if component not in MODEL_SECTIONS:
            raise KeyError(f"unknown component {component!r}; valid: {', '.join(MODEL_SECTIONS)}")
        return to_plain(getattr(self, component))

    def to_dict(self) -> dict:
        return to_plain(self)


MODEL_SECTIONS = ("vae", "unet", "align")


# ----------------------------------------------------------------------------------------------------------------
# allowed ranges of every numeric field, checked in the loader's one validation pass (a tuple field: each element)


@dataclass(frozen=True)
class Range:
    """lo <= value <= hi, with `lo_open` / `hi_open` making a bound strict; None = unbounded."""

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, value: float) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return False
        return True

    def describe(self) -> str:
        def num(v):
            return f"{v:g}" if isinstance(v, float) else str(v)

        low = None if self.lo is None else f"{'>' if self.lo_open else '>='} {num(self.lo)}"
        high = None if self.hi is None else f"{'<' if self.hi_open else '<='} {num(self.hi)}"
        if low and high:
            return f"{num(self.lo)} {'<' if self.lo_open else '<='} value {'<' if self.hi_open else '<='} " \
                   f"{num(self.hi)}"
        return low or high or "(any finite value)"


POSITIVE_INT, NON_NEGATIVE = Range(1), Range(0)
POSITIVE = Range(0.0, lo_open=True)
FRACTION = Range(0.0, 1.0)
DROPOUT = Range(0.0, 1.0, hi_open=True)
DIGITAL_VIL = Range(0.0, 255.0)

_NETWORK_COMMON = {"input_shape": POSITIVE_INT, "base_units": POSITIVE_INT, "scale_alpha": POSITIVE,
                   "num_heads": POSITIVE_INT, "attn_drop": DROPOUT, "proj_drop": DROPOUT, "ffn_drop": DROPOUT,
                   "downsample": POSITIVE_INT, "depth": POSITIVE_INT, "num_global_vectors": NON_NEGATIVE,
                   "global_dim_ratio": POSITIVE_INT, "checkpoint_level": Range(0, 2),
                   "time_embed_channels_mult": POSITIVE_INT, "time_embed_dropout": DROPOUT}

LIMITS = {
    DataConfig: {"img_size": POSITIVE_INT, "raw_seq_len": POSITIVE_INT, "in_len": POSITIVE_INT,
                 "out_len": POSITIVE_INT, "stride": POSITIVE_INT, "val_ratio": Range(0.0, 1.0, hi_open=True),
                 "split_seed": Range(0, 2 ** 32 - 1), "shuffle_seed": Range(0, 2 ** 32 - 1)},
    VAEConfig: {"in_channels": POSITIVE_INT, "out_channels": POSITIVE_INT, "block_out_channels": POSITIVE_INT,
                "layers_per_block": POSITIVE_INT, "latent_channels": POSITIVE_INT, "norm_num_groups": POSITIVE_INT},
    UNetConfig: {**_NETWORK_COMMON, "target_shape": POSITIVE_INT, "upsample_kernel_size": POSITIVE_INT,
                 "block_units": POSITIVE_INT},
    AlignConfig: {**_NETWORK_COMMON, "out_channels": POSITIVE_INT, "block_units": POSITIVE_INT,
                  "out_len": POSITIVE_INT},
    DiffusionConfig: {"timesteps": Range(1, 100_000), "linear_start": POSITIVE, "linear_end": POSITIVE,
                      "cosine_s": POSITIVE, "scale_factor": POSITIVE, "logvar_init": Range()},
    TrainConfig: {"steps": POSITIVE_INT, "micro_batch_size": POSITIVE_INT, "total_batch_size": POSITIVE_INT,
                  "lr": POSITIVE, "betas": Range(0.0, 1.0, hi_open=True), "weight_decay": Range(0.0),
                  "warmup_ratio": FRACTION, "warmup_min_lr_ratio": FRACTION, "min_lr_ratio": FRACTION,
                  "grad_clip": Range(0.0), "log_every": POSITIVE_INT, "val_every": POSITIVE_INT,
                  "val_batches": NON_NEGATIVE, "ckpt_every": POSITIVE_INT, "keep_ckpts": NON_NEGATIVE,
                  "ema_decay": Range(0.0, 1.0, hi_open=True), "recompute": Range(0, 3), "kl_weight": Range(0.0), "disc_start": NON_NEGATIVE,
                  "disc_weight": Range(0.0)},
    SampleConfig: {"samples": Range(1, 4096), "steps": POSITIVE_INT, "eta": FRACTION, "align_target": DIGITAL_VIL,
                   "align_factor": Range(0.0), "align_oracle": Range(0.0), "guide_scale": Range(0.0), "member_batch": NON_NEGATIVE,
                   "tile_overlap": NON_NEGATIVE, "gif_members": NON_NEGATIVE, "thresholds": DIGITAL_VIL},
    ScoreConfig: {"thresholds": DIGITAL_VIL, "eps": POSITIVE, "pools": POSITIVE_INT, "fss_scales": POSITIVE_INT,
                  "fss_thresholds": DIGITAL_VIL, "batch_size": POSITIVE_INT, "rank_min": DIGITAL_VIL,
                  "resamples": Range(1, 100_000), "interval": Range(0.0, 1.0, lo_open=True, hi_open=True)},
    Config: {"seed": Range(0, 2 ** 32 - 1)},  # MindSpore's set_seed takes 0 .. 2**32 - 1
}


def to_plain(obj):
    """Dataclasses → dicts, tuples → lists, recursively (JSON / YAML ready)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj
