"""Glue from a config to a running trainer: runtime, data, networks, data parallelism, resume."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from prediff.config import Config, TrainConfig, config_from_dict, to_plain
from prediff.errors import ConfigError, InputError, PrediffError

from .trainer import ResumePoint, Trainer, TrainingListener, TrainingResult, find_resume_point

SECTIONS = {"vae": "train_vae", "unet": "train_diffusion", "align": "train_align"}

# what a resumed run may change: where the data is, where it runs, how long it trains and how often it logs,
# validates and checkpoints; none of these changes what a step computes (`preset`, a label, is not compared)
_RESUME_FREE = ("data.root", "device")
_RESUME_FREE_TRAIN = ("steps", "log_every", "val_every", "ckpt_every", "keep_ckpts")


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


def _section(config: Config, component: str) -> TrainConfig:
    return getattr(config, SECTIONS[component])


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


def _load_frozen_vae(path: Optional[Path], config: Config):
    import prediff_models as models
    from prediff.io.checkpoint import load_checkpoint, load_weights

    if path is None:
        raise InputError("--vae is required: give a VAE checkpoint from `prediff train-vae` or "
                         "`prediff convert-weights --component vae`")
    ckpt = load_checkpoint(path, component="vae")
    vae = models.build("vae", ckpt.model_kwargs)
    load_weights(vae, ckpt.weights(), source=str(path))
    latent = int(ckpt.model_kwargs["latent_channels"])
    wanted = config.unet.input_shape[-1]
    if latent != wanted or config.align.input_shape[-1] != wanted:
        raise InputError(f"--vae {path} has {latent} latent channels but the config's unet/align expect "
                         f"{wanted}; use a matching --config or VAE")
    return vae


def run_training(request: TrainRequest, listener: Optional[TrainingListener] = None) -> TrainingResult:
    import prediff_models as models
    from prediff.data import EpochBatches, iterate_batches, open_dataset
    from prediff.io.checkpoint import file_sha256
    from prediff.runtime import setup_runtime

    component, run_dir = request.component, Path(request.run_dir)
    if component not in SECTIONS:
        raise PrediffError(f"unknown component {component!r}; valid: {', '.join(SECTIONS)}")
    config = request.config
    vae_path = request.vae_checkpoint
    point: Optional[ResumePoint] = None
    if request.resume:
        # validate first, write after: the run directory is untouched until Trainer.fit
        point = find_resume_point(run_dir, component)
        config = resume_config(request, point)
        meta = point.ckpt.meta
        if component != "vae":
            recorded = meta.get("vae_checkpoint")
            if vae_path is None and recorded:
                vae_path = Path(recorded["path"])
            if recorded and vae_path is not None and Path(vae_path).is_file() \
                    and file_sha256(vae_path) != recorded["sha256"]:
                raise InputError(f"--vae {vae_path} is not the VAE this run was trained with ({recorded['path']})")
    else:
        config = _with_steps(config, component, request.steps)
    section = _section(config, component)

    setup_runtime(config.device, config.seed)
    dist = init_distributed()
    micro = section.micro_batch_size
    if section.total_batch_size % (micro * dist.world_size):
        raise ConfigError(f"config key '{SECTIONS[component]}.total_batch_size': {section.total_batch_size} is not a "
                          f"multiple of micro_batch_size × workers = {micro * dist.world_size}")
    accum = section.total_batch_size // (micro * dist.world_size)

    dataset = open_dataset(config.data)
    frames = component == "vae"
    train_set, val_set = dataset.split("train", frames=frames), dataset.split("val", frames=frames)
    if len(train_set) < micro * dist.world_size:
        raise InputError(f"the training split has {len(train_set)} samples, fewer than one batch of "
                         f"{micro * dist.world_size}; use a bigger dataset or a smaller micro_batch_size")
    train_data = EpochBatches(train_set, micro, seed=config.seed, aug_mode=config.data.aug_mode, rank=dist.rank,
                              world_size=dist.world_size)
    limit = section.val_batches or None

    def val_data():
        return iterate_batches(val_set, micro, limit=limit)

    net = models.build(component, config.model_kwargs(component))
    factory = None
    if dist.world_size > 1:
        def factory(params):
            return _grad_reducer(params, dist)
    if component == "vae":
        from .vae_task import VAETask

        task = VAETask(config, net, accum_steps=accum, total_steps=section.steps, reducer_factory=factory)
    else:
        vae = _load_frozen_vae(vae_path, config)
        if component == "unet":
            from .diffusion_task import DiffusionTask as Task
        else:
            from .align_task import AlignTask as Task
        task = Task(config, net, vae, accum_steps=accum, total_steps=section.steps, reducer_factory=factory)
        task.extra_meta = {"vae_checkpoint": {"path": str(Path(vae_path).resolve()),
                                              "sha256": file_sha256(vae_path)}}
    trainer = Trainer(task, run_dir=run_dir, config=config, section=section, train_data=train_data,
                      val_data=val_data if len(val_set) else None, accum_steps=accum, rank=dist.rank,
                      world_size=dist.world_size, listener=listener)
    if point is not None:
        trainer.resume(point)
    return trainer.fit()
