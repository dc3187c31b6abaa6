"""prediff checkpoints: MindSpore `.ckpt` files that carry everything needed to rebuild and resume.

Layout (one MindSpore checkpoint):
* tensors, grouped by a prefix: `model.<param>` (network weights, MindSpore names), `ema.<param>` (exponential
  moving average of the weights, if any), `optim.<name>` (optimizer moments and step), `aux.<name>` (other
  trained tensors: the diffusion loss's learned log-variance, the VAE's discriminator, ...);
* one string entry `prediff_meta`: JSON with `format` (version), `component` ("vae", "unet", "align"),
  `model_kwargs` (the official constructor arguments: `models.build(component, model_kwargs)` rebuilds the
  network), `config` (the whole resolved prediff config, so a run can be resumed or sampled with nothing else),
  and free-form entries such as `step` and RNG state.

Files are written to a temporary name in the destination folder, fsync'ed and renamed (`io.atomic`), so a crash
never leaves a half-written checkpoint under the final name.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import mindspore as ms
import numpy as np

from prediff.errors import InputError
from prediff.io.atomic import atomic_path
from prediff.io.ckpt_stream import write_ckpt
from prediff.io.mindspore_ckpt import read_mindspore_ckpt

FORMAT_VERSION = 1
META_KEY = "prediff_meta"
GROUPS = ("model", "ema", "optim", "aux")


@dataclass
class Checkpoint:
    """Contents of a prediff checkpoint, keyed by name without the group prefix. Read checkpoints hold NumPy
    arrays; one being saved may hold live MindSpore tensors or parameters instead (`save_checkpoint` copies each to
    the host only while writing it, so a trainer's checkpoint needs no second copy of its state)."""

    component: str
    model_kwargs: Dict[str, Any]
    model: Dict[str, np.ndarray]
    config: Optional[Dict[str, Any]] = None
    ema: Dict[str, np.ndarray] = field(default_factory=dict)
    optim: Dict[str, np.ndarray] = field(default_factory=dict)
    aux: Dict[str, np.ndarray] = field(default_factory=dict)
    meta: Dict[str, Any] = field(default_factory=dict)

    def weights(self, prefer_ema: bool = True) -> Dict[str, np.ndarray]:
        """The weights to sample with: the EMA copy when present (and preferred), else the raw weights."""
        return self.ema if (prefer_ema and self.ema) else self.model


def save_checkpoint(path, ckpt: Checkpoint) -> Path:
    """Write `ckpt` to `path` (a `.ckpt` name) atomically."""
    path = Path(path)
    if path.suffix != ".ckpt":
        raise ValueError(f"checkpoint names end in .ckpt, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = ((f"{group}.{name}", value) for group in GROUPS for name, value in getattr(ckpt, group).items())
    meta = dict(ckpt.meta)
    meta.update(format=FORMAT_VERSION, component=ckpt.component, model_kwargs=ckpt.model_kwargs,
                config=ckpt.config)
    with atomic_path(path) as tmp:
        # one tensor at a time: values may be live MindSpore parameters, copied to the host only while written
        write_ckpt(tmp, entries, {META_KEY: json.dumps(meta, sort_keys=True)})
    return path


def load_checkpoint(path, component: Optional[str] = None) -> Checkpoint:
    """Read a prediff checkpoint; `component` (if given) must match the one stored. The file is read as untrusted
    (`io.mindspore_ckpt`): a damaged or crafted file ends in one `InputError` line."""
    path = Path(path)
    raw = read_mindspore_ckpt(path, what="checkpoint")
    meta_text = raw.pop(META_KEY, None)
    if not isinstance(meta_text, str):
        raise InputError(f"{path} is a MindSpore checkpoint but not a prediff one (no {META_KEY}); convert official "
                         "PyTorch weights or MindEarth PreDiff checkpoints with `prediff convert-weights`, or a "
                         "MindEarth model with `prediff import-mindearth`")
    try:
        meta = json.loads(meta_text)
        if not isinstance(meta, dict) or not isinstance(meta.get("component"), str) \
                or not isinstance(meta.get("model_kwargs"), dict) or not isinstance(meta.get("format", 0), int):
            raise ValueError("no component, model_kwargs or format number")
    except ValueError as exc:
        raise InputError(f"{path}: its {META_KEY} entry is damaged ({exc})") from None
    if meta.get("format", 0) > FORMAT_VERSION:
        raise InputError(f"{path} was written by a newer prediff (format {meta['format']}); upgrade prediff")
    stored = meta.pop("component")
    if component is not None and stored != component:
        raise InputError(f"{path} holds a {stored} checkpoint, but a {component} checkpoint is needed here")
    groups: Dict[str, Dict[str, np.ndarray]] = {g: {} for g in GROUPS}
    for key, value in raw.items():
        group, _, name = key.partition(".")
        if group in groups and not isinstance(value, str):
            groups[group][name] = value
    kwargs = meta.pop("model_kwargs")
    config = meta.pop("config", None)
    meta.pop("format", None)
    return Checkpoint(component=stored, model_kwargs=kwargs, config=config, meta=meta, **groups)


def inference_checkpoint(ckpt: Checkpoint, prefer_ema: bool = True) -> Checkpoint:
    """The part of `ckpt` that sampling needs: the (EMA) weights as `model`, the config, the step.

    Optimizer moments, the discriminator and other training-only tensors are dropped (they are 2-10x the
    weights), so the result cannot be resumed, only sampled from or fine-tuned from scratch.
    """
    meta = {k: v for k, v in ckpt.meta.items() if k in ("step", "name", "vae_checkpoint")}
    meta["exported_from"] = "ema" if (prefer_ema and ckpt.ema) else "model"
    return Checkpoint(component=ckpt.component, model_kwargs=dict(ckpt.model_kwargs), config=ckpt.config,
                      model=dict(ckpt.weights(prefer_ema)), meta=meta)


def net_weights(net, live: bool = False) -> Dict[str, np.ndarray]:
    """A network's parameters as NumPy arrays keyed by their path inside `net` (`live`: the parameters themselves,
    no copy — for `save_checkpoint`, which copies them one at a time)."""
    return {name: (p if live else p.asnumpy()) for name, p in net.parameters_and_names()}


def load_weights(net, weights: Mapping[str, np.ndarray], source: str = "checkpoint") -> None:
    """Copy `weights` into `net`; the names and shapes must match exactly."""
    params = dict(net.parameters_and_names())
    missing = sorted(set(params) - set(weights))
    unexpected = sorted(set(weights) - set(params))
    wrong = [n for n in params if n in weights and tuple(weights[n].shape) != tuple(params[n].shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("with a different shape", wrong)):
            if items:
                parts.append(f"{len(items)} {label} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})")
        raise InputError(f"{source} does not fit the network built from its config: " + "; ".join(parts))
    for name, param in params.items():
        param.set_data(ms.Tensor(np.asarray(weights[name]), dtype=param.dtype))


def weights_sha256(weights: Mapping[str, np.ndarray]) -> str:
    """Hex SHA-256 of a set of weights (names, dtypes, shapes and values): the same network weights give the same
    digest whichever file holds them (a training checkpoint, its exported inference copy, a converted file)."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        value = np.ascontiguousarray(weights[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}\n".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (provenance of checkpoints in forecast files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
