"""MindEarth's PreDiff checkpoints (mindspore-ai/mindscience, MindEarth/applications/nowcasting/PreDiff) → prediff
checkpoints and model folders.

MindEarth writes MindSpore `.ckpt` files of the bare networks: `vae.ckpt` and `align.ckpt` without a key prefix, the
UNet as its trainer saves it (`diffusion_epoch{N}.ckpt`, every key under `main_module.main_model.`) or under
`main_model.` when saved from the model cell. Their names and layouts map onto ours as `prediff_models.mindearth`
describes; the network arguments come from the MindEarth YAML (`config.mindearth`) or, for files of a preset's
shapes, from that preset.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

import prediff_models as models
from prediff import __version__
from prediff.config import Config, load_config, override_config, preset_names, to_plain
from prediff.errors import InputError
from prediff.io.atomic import atomic_write_text
from prediff.io.checkpoint import META_KEY, Checkpoint, file_sha256, net_weights, save_checkpoint
from prediff.io.mindspore_ckpt import read_mindspore_ckpt
from prediff.io.output_dir import check_output_dir
from prediff.io.publish import publish_folder, staging_folder

from .model import COMPONENT_FILES, MODEL_CARD

#: the key prefixes MindEarth's cells put on a network's names when it is saved (see the module docstring):
#: the trainer's `main_module` → the model's `main_model` (UNet), the model's first-stage/conditioning VAE
PREFIXES = {"vae": ("", "first_stage_model.", "cond_stage_model.", "main_module.first_stage_model.",
                    "main_module.cond_stage_model."),
            "unet": ("main_module.main_model.", "main_model.", ""),
            "align": ("",)}
SOURCE = "MindEarth PreDiff (mindspore-ai/mindscience, MindEarth/applications/nowcasting/PreDiff)"
# top-level cells that only one of the networks has: to say which network a file holds when it is not the one asked
_DISTINCT = {"vae": {"encoder", "decoder", "quant_conv", "post_quant_conv"},
             "unet": {"up_self_blocks", "final_proj", "upsample_layers", "up_time_embed_blocks"},
             "align": {"out"}}


@dataclass
class MindEarthNetwork:
    """A MindEarth checkpoint read into one of our networks."""

    component: str
    source: Path
    net: object
    config: Config
    prefix: str
    tensors: int
    dropped: List[str] = field(default_factory=list)  # tensors MindEarth holds but never uses


def _show_prefix(prefix: Optional[str]) -> str:
    return repr(prefix) if prefix else "none"


def _tensors(src: Path, component: str) -> Dict[str, np.ndarray]:
    raw = read_mindspore_ckpt(src, what=f"{component} checkpoint")
    if META_KEY in raw:
        raise InputError(f"{src} is already a prediff checkpoint; use it as it is (--{component} or a model folder)")
    strings = [k for k, v in raw.items() if isinstance(v, str)]
    if strings:
        raise InputError(f"{src} holds text entries ({', '.join(strings[:3])}); a MindEarth {component} checkpoint "
                         "holds the network's tensors only")
    return raw


def _strip_prefix(src: Path, component: str, arrays: Mapping[str, np.ndarray], net) -> tuple:
    """(prefix, {name without prefix: array}); one line for a file with no, mixed or unknown prefixes."""
    groups = models.mindearth.split_prefix(arrays, models.mindearth.top_level_names(net))
    found = sorted((p for p in groups if p is not None), key=len, reverse=True)
    if not found:
        first = next(iter(arrays), "")
        heads = {part for key in arrays for part in key.split(".")}
        other = [c for c, names in _DISTINCT.items() if c != component and heads & names]
        hint = f"; it looks like a MindEarth {other[0]} checkpoint" if len(other) == 1 else ""
        raise InputError(f"{src} holds no {component} tensors: none of its {len(arrays)} names (e.g. {first!r}) "
                         f"names a part of the {component}{hint}")
    if len(found) > 1:
        counts = ", ".join(f"{_show_prefix(p)}: {len(groups[p])} keys" for p in found)
        raise InputError(f"{src} mixes key prefixes ({counts}); a MindEarth {component} checkpoint holds one network "
                         "under one prefix")
    prefix = found[0]
    if prefix not in PREFIXES[component]:
        raise InputError(f"{src}: unknown key prefix {prefix!r}; a MindEarth {component} checkpoint has "
                         f"{' or '.join(_show_prefix(p) for p in PREFIXES[component])}")
    state = {key[len(prefix):]: arrays[key] for key in groups[prefix]}
    state.update({key: arrays[key] for key in groups.get(None, [])})  # reported as unexpected by the key check
    return prefix, state


def _signature(component: str, kwargs: Mapping) -> Dict[str, tuple]:
    """A few tensor shapes that follow from a network's arguments without building it (to skip presets quickly)."""
    if component == "vae":
        boc = list(kwargs["block_out_channels"])
        return {"encoder.conv_in.weight": (boc[0], kwargs["in_channels"], 3, 3),
                "quant_conv.weight": (2 * kwargs["latent_channels"], 2 * kwargs["latent_channels"], 1, 1),
                "decoder.conv_out.weight": (kwargs["out_channels"], boc[0], 3, 3)}
    t, h, w, c = kwargs["input_shape"]
    base = kwargs["base_units"]
    if component == "unet":
        t += kwargs["target_shape"][0]
    out = {"pos_embed.t_embed.embedding_table": (t, base), "pos_embed.h_embed.embedding_table": (h, base),
           "pos_embed.w_embed.embedding_table": (w, base)}
    out["final_proj.weight" if component == "unet" else "out.2.c_proj.bias"] = \
        (c, base) if component == "unet" else (kwargs["out_channels"],)
    return out


def as_mindearth(config: Config) -> Config:
    """`config` with its networks computing what MindEarth's do: the timestep sinusoid's frequencies with MindSpore's
    float32 exp (whatever config the weights come with: a preset, a prediff YAML or MindEarth's)."""
    return override_config(config, values={f"{c}.timestep_frequencies": "mindearth" for c in ("unet", "align")})


def _load(src: Path, component: str, arrays: Mapping[str, np.ndarray], config: Config) -> MindEarthNetwork:
    config = as_mindearth(config)
    net = models.build(component, config.model_kwargs(component))
    prefix, state = _strip_prefix(src, component, arrays, net)
    try:
        dropped = models.mindearth.load_mindearth_state_dict(net, state)
    except models.StateDictMismatch as exc:
        raise InputError(f"{src} does not fit the {component} of config '{config.preset}': {exc}") from None
    return MindEarthNetwork(component=component, source=src, net=net, config=config, prefix=prefix,
                            tensors=len(arrays), dropped=dropped)


def _fits_signature(arrays: Mapping[str, np.ndarray], component: str, config: Config) -> bool:
    names = {}
    for key, value in arrays.items():
        for prefix in PREFIXES[component]:
            if key.startswith(prefix):
                names.setdefault(key[len(prefix):], tuple(value.shape))
    try:
        wanted = _signature(component, config.model_kwargs(component))
    except (KeyError, TypeError, ValueError, IndexError):
        return False
    return all(names.get(k) == v for k, v in wanted.items())


def _presets_first_paper() -> List[str]:
    names = preset_names()
    return sorted(names, key=lambda n: (n != "sevirlr", n))


def read_mindearth_network(src, component: str, config: Optional[Config] = None) -> MindEarthNetwork:
    """Read the MindEarth checkpoint `src` into our `component` network built from `config` (a translated MindEarth
    YAML or any prediff config); without a config, the first preset whose network the file fits exactly."""
    src = Path(src)
    if component not in models.COMPONENTS:
        raise InputError(f"unknown component {component!r}; valid: {', '.join(models.COMPONENTS)}")
    arrays = _tensors(src, component)
    if config is not None:
        return _load(src, component, arrays, config)
    tried, near = [], None
    for name in _presets_first_paper():
        preset = load_config(name)
        tried.append(name)
        if _fits_signature(arrays, component, preset):
            try:
                return _load(src, component, arrays, preset)
            except InputError as exc:  # a preset of its shapes that it still does not fit: say what differs
                near = near or exc
    if near is not None:
        raise near
    raise InputError(f"{src} fits the {component} of no preset ({', '.join(tried)}); give the MindEarth YAML it was "
                     "trained with: --config diffusion.yaml")


def mindearth_checkpoint(network: MindEarthNetwork) -> Checkpoint:
    """The prediff checkpoint of a converted MindEarth network (weights, constructor arguments, whole config)."""
    config = network.config
    return Checkpoint(component=network.component, model_kwargs=config.model_kwargs(network.component),
                      config=to_plain(config), model=net_weights(network.net),
                      meta={"step": 0, "source": str(network.source), "source_sha256": file_sha256(network.source),
                            "source_format": "mindearth", "source_prefix": network.prefix,
                            "source_unused": network.dropped, "converted_by": f"prediff {__version__}"})


# ------------------------------------------------------------------------------------------------------------------
# a model folder from the three MindEarth files


def _config_source(config: Optional[str]) -> Optional[dict]:
    if config is None:
        return None
    path = Path(config)
    if path.is_file():
        return {"file": str(path), "sha256": file_sha256(path)}
    return {"preset": str(config)}


def import_mindearth_model(vae, unet, out, align=None, config: Optional[str] = None, overwrite: bool = False,
                           sample_sets: Sequence[str] = ()) -> Dict[str, Path]:
    """Build a model folder `out` (vae.ckpt, unet.ckpt, align.ckpt when given, model.json) from MindEarth's
    checkpoints and its YAML (`config`: a MindEarth or prediff YAML, or a preset name; None: the preset the files fit).

    Everything is read and checked before anything is written; the folder is then published whole (`io.publish`),
    replacing an earlier model there only with `overwrite`. `sample_sets` (`sample.KEY=VALUE`) change the model's
    default forecast settings. Returns file name → published path.
    """
    sources = {"vae": Path(vae), "unet": Path(unet), **({"align": Path(align)} if align is not None else {})}
    wrong = [item for item in sample_sets if not item.strip().startswith("sample.")]
    if wrong:
        raise InputError(f"--set changes only the default forecast settings here (sample.KEY=VALUE); got {wrong[0]!r}")
    out = Path(out)
    names = [*COMPONENT_FILES.values(), MODEL_CARD]
    check_output_dir(out, names, overwrite, what="a model", inputs=list(sources.values()))
    cfg = load_config(config) if config is not None else None
    networks: Dict[str, MindEarthNetwork] = {}
    for component, path in sources.items():
        networks[component] = read_mindearth_network(path, component, cfg)
        cfg = cfg or networks[component].config  # the preset the first file fits serves the others
    _check_together(networks)
    cfg = override_config(as_mindearth(cfg), list(sample_sets))
    card = {"name": out.name, "origin": SOURCE, "prediff_version": __version__,
            "imported": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config": {**(_config_source(config) or {"preset": cfg.preset}), "translated": to_plain(cfg)},
            "sources": {}, "outputs": {}}
    with staging_folder(out) as staging:
        for component, network in networks.items():
            network.config = cfg
            ckpt = mindearth_checkpoint(network)
            path = save_checkpoint(staging / COMPONENT_FILES[component], ckpt)
            card["sources"][component] = {"file": str(network.source), "sha256": ckpt.meta["source_sha256"],
                                          "bytes": network.source.stat().st_size, "key_prefix": network.prefix,
                                          "tensors": network.tensors, "unused_dropped": network.dropped}
            card["outputs"][component] = {"file": COMPONENT_FILES[component], "sha256": file_sha256(path),
                                          "parameters": models.count_parameters(network.net)}
        atomic_write_text(staging / MODEL_CARD, json.dumps(card, indent=2))
        published = publish_folder(staging, out, names)
    return {p.name: p for p in published}


def _check_together(networks: Mapping[str, MindEarthNetwork]) -> None:
    vae, unet = networks["vae"], networks["unet"]
    latent = int(vae.config.vae.latent_channels)
    unet_in = list(unet.config.unet.input_shape)
    if unet_in[-1] != latent:
        raise InputError(f"the UNet {unet.source} takes latents of {unet_in[-1]} channels but the VAE {vae.source} "
                         f"makes {latent}")
    if "align" in networks:
        align = networks["align"]
        if list(align.config.align.input_shape) != list(unet.config.unet.target_shape):
            raise InputError(f"the alignment network {align.source} takes latents "
                             f"{list(align.config.align.input_shape)} but the UNet {unet.source} makes "
                             f"{list(unet.config.unet.target_shape)}")
