"""Glue from a config to a running trainer: runtime, data, networks, data parallelism, resume."""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from prediff.config import Config, config_from_dict, to_plain
from prediff.errors import ConfigError, InputError, PrediffError
from prediff.heap import HeapTrimmer
from prediff.io.checkpoint import Checkpoint

from .task import BLOCKWISE, SECTIONS, TrainingTask, train_section
from .trainer import BatchSource, ResumePoint, Trainer, TrainingListener, TrainingResult, find_resume_point

# what a resumed run may change: where the data is, where it runs, how long it trains and how often it logs,
# validates and checkpoints; none of these changes what a step computes (`preset`, a label, is not compared)
_RESUME_FREE = ("data.root", "device")
_RESUME_FREE_TRAIN = ("steps", "log_every", "val_every", "ckpt_every", "keep_ckpts", "recompute",
                      "keep_linear_outputs", "latent_cache")


@dataclass
class TrainRequest:
    component: str  # "vae", "unet" or "align"
    config: Config
    run_dir: Path
    steps: Optional[int] = None  # total optimizer steps, overriding the config
    resume: bool = False
    vae_checkpoint: Optional[Path] = None  # frozen VAE of the latent trainers
    #: on resume, the dotted config keys (or sections) the caller set on purpose, e.g. the CLI's `--set` keys;
    #: only these are compared with the run's stored config. None: all of `config` is meant.
    explicit_keys: Optional[Sequence[str]] = None


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1


def _with_steps(config: Config, component: str, steps: Optional[int]) -> Config:
    if steps is None:
        return config
    name = SECTIONS[component]
    return dataclasses.replace(config, **{name: dataclasses.replace(getattr(config, name), steps=int(steps))})


def _flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _is_explicit(key: str, explicit: Optional[Sequence[str]]) -> bool:
    return explicit is None or any(key == e or key.startswith(e + ".") for e in explicit)


def resume_config(request: TrainRequest, point: ResumePoint) -> Config:
    """The config a resumed run continues with: the one stored in its checkpoint, with the requested data root,
    device, length and logging/validation/checkpoint cadence. Any other requested value that differs from the
    stored one is refused (ConfigError naming the key and both values), as is a length that ends at or before
    the step reached; nothing is written before these checks."""
    section = SECTIONS[request.component]
    free = set(_RESUME_FREE) | {f"{section}.{k}" for k in _RESUME_FREE_TRAIN}
    stored = _flatten(to_plain(config_from_dict(point.ckpt.config)))
    wanted = _flatten(to_plain(request.config))
    explicit = None if request.explicit_keys is None else list(request.explicit_keys) + ["device"]
    chosen = dict(stored)
    for key, value in wanted.items():
        if not _is_explicit(key, explicit) or key == "preset" or value == stored.get(key):
            continue
        if key == "data.root" and value is None:
            continue
        if key not in free:
            raise ConfigError(f"cannot resume {request.run_dir} with {key}={_show(value)}: the run was trained with "
                              f"{_show(stored.get(key))}; a resumed run may change only data.root, device, "
                              f"{section}.steps and its log/val/ckpt cadence (start a new --run-dir instead)")
        chosen[key] = value
    if request.steps is not None:
        chosen[f"{section}.steps"] = int(request.steps)
    total, reached = chosen[f"{section}.steps"], point.step
    if total <= reached:
        asked = f"--steps {total}" if request.steps is not None else f"{section}.steps = {total}"
        raise ConfigError(f"run {request.run_dir} is at step {reached}; {asked} does not go beyond it: "
                          "pass a larger --steps to continue it")
    return config_from_dict(_unflatten(chosen))


def _unflatten(flat: Dict[str, Any]) -> Dict[str, Any]:
    tree: Dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, float) else f"{value:g}"


def init_distributed() -> Distributed:
    """Join MindSpore's communication group when launched by msrun (RANK_SIZE > 1)."""
    world = int(os.environ.get("RANK_SIZE", os.environ.get("MS_WORKER_NUM", "1")) or 1)
    if world <= 1:
        return Distributed()
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    init()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    return Distributed(rank=get_rank(), world_size=get_group_size())


def _grad_reducer(params, dist: Distributed):
    if dist.world_size <= 1:
        return None
    from mindspore import nn

    return nn.DistributedGradReducer(params, mean=True, degree=dist.world_size)


@dataclass
class FrozenVAE:
    """The VAE checkpoint a latent trainer encodes with, read and hashed once per run."""

    path: Path
    ckpt: Checkpoint
    sha256: str  # of the file
    weights_sha256: str  # of the weights the trainer loads: the EMA copy when there is one

    @classmethod
    def read(cls, path: Optional[Path], config: Config) -> "FrozenVAE":
        """Read the checkpoint at `path`; InputError when there is none or its latents do not fit `config`."""
        from prediff.io.checkpoint import file_sha256, load_checkpoint, weights_sha256

        if path is None:
            raise InputError("--vae is required: give a VAE checkpoint from `prediff train-vae` or "
                             "`prediff convert-weights --component vae`")
        path = Path(path)
        ckpt = load_checkpoint(path, component="vae")
        latent = int(ckpt.model_kwargs["latent_channels"])
        wanted = config.unet.input_shape[-1]
        if latent != wanted or config.align.input_shape[-1] != wanted:
            raise InputError(f"--vae {path} has {latent} latent channels but the config's unet/align expect "
                             f"{wanted}; use a matching --config or VAE")
        return cls(path, ckpt, file_sha256(path), weights_sha256(ckpt.weights()))

    def matches(self, recorded: Dict[str, str]) -> bool:
        """Whether this is the VAE a `vae_checkpoint` record names: the same file, or the same weights."""
        return self.sha256 == recorded.get("sha256") or self.weights_sha256 == recorded.get("weights_sha256")

    def record(self) -> Dict[str, str]:
        """The `vae_checkpoint` entry of the run's checkpoints (`pipelines.model.check_vae_pairing` reads it)."""
        return {"path": str(self.path.resolve()), "sha256": self.sha256, "weights_sha256": self.weights_sha256}

    def network(self):
        """The VAE built from the checkpoint, with the weights `weights_sha256` digests."""
        import prediff_models as models
        from prediff.io.checkpoint import load_weights

        vae = models.build("vae", self.ckpt.model_kwargs)
        load_weights(vae, self.ckpt.weights(), source=str(self.path))
        return vae


def run_training(request: TrainRequest, listener: Optional[TrainingListener] = None) -> TrainingResult:
    """Train `request.component` in `request.run_dir`, or continue it there (`request.resume`); every check that
    can refuse the request runs before the run directory is written."""
    from prediff.runtime import setup_runtime

    if request.component not in SECTIONS:
        raise PrediffError(f"unknown component {request.component!r}; valid: {', '.join(SECTIONS)}")
    config, point, vae = _resolve(request)
    section = train_section(config, request.component)
    if section.latent_cache is not None:
        _check_latent_cache(request.component, config)
    setup_runtime(config.device, config.seed)
    dist = init_distributed()
    train_data, val_data, accum = _training_data(config, request.component, dist)
    task = _build_task(request.component, config, accum, dist, vae)
    if section.latent_cache is not None:
        train_data = cached_training_data(train_data, config, section, task.encode, vae)
    trainer = Trainer(task, run_dir=Path(request.run_dir), config=config, section=section, train_data=train_data,
                      val_data=val_data, accum_steps=accum, rank=dist.rank, world_size=dist.world_size,
                      listener=listener, extra_meta={"vae_checkpoint": vae.record()} if vae is not None else None)
    if point is not None:
        trainer.resume(point)
    with HeapTrimmer():  # compiling the train step leaves GBs of freed compiler memory in the heap
        return trainer.fit()


def _resolve(request: TrainRequest) -> Tuple[Config, Optional[ResumePoint], Optional[FrozenVAE]]:
    """The config to train with, the checkpoint to resume from (None: a fresh run) and the frozen VAE (None for
    the VAE itself). A resumed latent run takes its recorded VAE unless `--vae` names one, which must match it."""
    recorded = None
    if request.resume:
        # validate first, write after: the run directory is untouched until Trainer.fit
        point = find_resume_point(Path(request.run_dir), request.component)
        config = resume_config(request, point)
        recorded = point.ckpt.meta.get("vae_checkpoint")
    else:
        point, config = None, _with_steps(request.config, request.component, request.steps)
    if request.component == "vae":
        return config, point, None
    path = request.vae_checkpoint
    if path is None and recorded:
        path = Path(recorded["path"])
    vae = FrozenVAE.read(path, config)
    if recorded and not vae.matches(recorded):
        raise InputError(f"--vae {path} is not the VAE this run was trained with ({recorded['path']})")
    return config, point, vae


def _training_data(config: Config, component: str, dist: Distributed) \
        -> Tuple[BatchSource, Optional[Callable[[], Iterable[np.ndarray]]], int]:
    """This rank's training micro-batches, the validation batches (None: empty split) and the micro-batches per
    optimizer step. The VAE trains on single frames, the latent trainers on whole sequences."""
    from prediff.data import EpochBatches, iterate_batches, open_dataset

    section = train_section(config, component)
    micro, workers = section.micro_batch_size, dist.world_size
    if section.total_batch_size % (micro * workers):
        raise ConfigError(f"config key '{SECTIONS[component]}.total_batch_size': {section.total_batch_size} is not a "
                          f"multiple of micro_batch_size × workers = {micro * workers}")
    dataset = open_dataset(config.data)
    frames = component == "vae"
    train_set, val_set = dataset.split("train", frames=frames), dataset.split("val", frames=frames)
    if len(train_set) < micro * workers:
        raise InputError(f"the training split has {len(train_set)} samples, fewer than one batch of "
                         f"{micro * workers}; use a bigger dataset or a smaller micro_batch_size")
    train_data = EpochBatches(train_set, micro, seed=config.seed, aug_mode=config.data.aug_mode, rank=dist.rank,
                              world_size=workers)
    limit = section.val_batches or None

    def val_data():
        return iterate_batches(val_set, micro, limit=limit)

    return train_data, val_data if len(val_set) else None, section.total_batch_size // (micro * workers)


def _check_latent_cache(component: str, config: Config) -> None:
    from prediff.data.batches import ORIENTATIONS

    key = f"config key '{SECTIONS[component]}.latent_cache'"
    if component == "vae":
        raise ConfigError(f"{key}: the VAE trains on pixels, there is nothing to cache; set it to null")
    if ORIENTATIONS.get(config.data.aug_mode) is None:
        raise ConfigError(f"{key} needs data.aug_mode \"0\" or \"2\" (finitely many orientations per sequence); "
                          f"aug_mode {config.data.aug_mode!r} rotates by any angle: set it to null or change aug_mode")


def cached_training_data(train_data, config: Config, section, encode: Callable, vae: FrozenVAE) -> BatchSource:
    """`train_data` (an `EpochBatches`) served encoded by `encode` (the task's compiled encoder), through the latent
    cache `section.latent_cache` (latent trainers only)."""
    from .encoded_batches import cached_batches

    return cached_batches(train_data, Path(section.latent_cache), encode=encode,
                          vae_weights_sha256=vae.weights_sha256, img_size=config.data.img_size,
                          vae_kwargs=vae.ckpt.model_kwargs,
                          description={"vae_checkpoint": str(vae.path.resolve()), "dataset": str(config.data.root)})


def _build_task(component: str, config: Config, accum: int, dist: Distributed,
                vae: Optional[FrozenVAE]) -> TrainingTask:
    """The network of `component` (initialised from `config.seed`) inside its trainer."""
    import prediff_models as models

    from prediff_models.recompute import enable_recompute

    net = models.build(component, config.model_kwargs(component))
    # before the first compile: the marks shape the training graph (the frozen VAE of the latent trainers is not
    # differentiated, so only the trained network is marked)
    level = train_section(config, component).recompute
    enable_recompute(net, 0 if level == BLOCKWISE else level)  # BLOCKWISE: the trainer's own graphs, no marks
    factory = functools.partial(_grad_reducer, dist=dist) if dist.world_size > 1 else None
    kwargs = dict(accum_steps=accum, total_steps=train_section(config, component).steps, reducer_factory=factory)
    if component == "vae":
        from .vae_task import VAETask

        return VAETask(config, net, **kwargs)
    if component == "unet":
        from .diffusion_task import DiffusionTask as Task
    else:
        from .align_task import AlignTask as Task
    return Task(config, net, vae.network(), **kwargs)
