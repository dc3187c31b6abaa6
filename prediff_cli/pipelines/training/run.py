"""Glue from a config to a running trainer: runtime, data, networks, data parallelism, resume."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from prediff_cli.config import Config, TrainConfig, config_from_dict
from prediff_cli.errors import ConfigError, InputError, PrediffError

from .trainer import Trainer, TrainingListener, TrainingResult

SECTIONS = {"vae": "train_vae", "unet": "train_diffusion", "align": "train_align"}


@dataclass
class TrainRequest:
    component: str  # "vae", "unet" or "align"
    config: Config
    run_dir: Path
    steps: Optional[int] = None  # total optimizer steps, overriding the config
    resume: bool = False
    vae_checkpoint: Optional[Path] = None  # frozen VAE of the latent trainers


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


def _stored_config(run_dir: Path, component: str):
    from prediff_cli.io.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run_dir / "last.ckpt", component=component)
    if ckpt.config is None:
        raise InputError(f"{run_dir / 'last.ckpt'} carries no config; cannot resume")
    return config_from_dict(ckpt.config), ckpt.meta


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
    import models
    from prediff_cli.io.checkpoint import load_checkpoint, load_weights

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
    import models
    from prediff_cli.data import EpochBatches, iterate_batches, open_dataset
    from prediff_cli.io.checkpoint import file_sha256
    from prediff_cli.runtime import setup_runtime

    component, run_dir = request.component, Path(request.run_dir)
    if component not in SECTIONS:
        raise PrediffError(f"unknown component {component!r}; valid: {', '.join(SECTIONS)}")
    config = request.config
    vae_path = request.vae_checkpoint
    if request.resume:
        stored, meta = _stored_config(run_dir, component)
        # the run continues with its own config; only the data location, device and length may change
        config = dataclasses.replace(stored, device=config.device,
                                     data=dataclasses.replace(stored.data, root=config.data.root or stored.data.root))
        if component != "vae":
            recorded = meta.get("vae_checkpoint")
            if vae_path is None and recorded:
                vae_path = Path(recorded["path"])
            if recorded and vae_path is not None and Path(vae_path).is_file() \
                    and file_sha256(vae_path) != recorded["sha256"]:
                raise InputError(f"--vae {vae_path} is not the VAE this run was trained with ({recorded['path']})")
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
    if request.resume:
        trainer.resume()
    return trainer.fit()
