"""MindEarth's PreDiff YAML (`configs/diffusion.yaml` of mindspore-ai/mindscience, MindEarth/applications/nowcasting/
PreDiff) translated into a prediff config, so `--config diffusion.yaml` works wherever a prediff YAML does.

A MindEarth YAML is recognised by its structure: a top-level `model` section holding `vae`, `latent_model` and
`align` (a prediff YAML has no `model` section). Its network arguments become the `vae`, `unet` and `align` sections;
an argument MindEarth's config leaves out takes MindEarth's constructor default (not prediff's), as MindEarth would
build the network. The schedule (`model.diffusion`) and the guidance scale (`model.align.guide_scale`) are
translated too; everything else (data, optim, logging, trainer, eval, summary) starts from the `sevirlr` preset,
with the frame size and sequence lengths taken from the networks. What cannot be reproduced is refused in one line
naming the MindEarth key.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

from prediff.errors import ConfigError

BASE_PRESET = "sevirlr"

# MindEarth's constructor defaults (src/vae/autoencoder_kl.py AutoencoderKL, src/diffusion/cuboid_transformer_unet.py
# CuboidTransformerUNet, src/knowledge_alignment/alignment.py NoisyCuboidTransformerEncoder); None = required
_INIT_MODES = {"attn_linear_init_mode": "0", "ffn_linear_init_mode": "0", "ffn2_linear_init_mode": "2",
               "attn_proj_linear_init_mode": "2", "conv_init_mode": "0", "down_linear_init_mode": "0",
               "global_proj_linear_init_mode": "2", "norm_init_mode": "0"}
_CUBOID_COMMON = {"input_shape": None, "base_units": None, "block_units": None, "scale_alpha": 1.0, "depth": None,
                  "downsample": 2, "downsample_type": "patch_merge", "use_attn_pattern": None,
                  "block_cuboid_size": None, "block_cuboid_strategy": None, "block_cuboid_shift_size": None,
                  "num_heads": 4, "attn_drop": 0.0, "proj_drop": 0.0, "ffn_drop": 0.0, "ffn_activation": None,
                  "gated_ffn": False, "norm_layer": "layer_norm", "use_inter_ffn": True,
                  "hierarchical_pos_embed": False, "padding_type": None, "use_relative_pos": True,
                  "self_attn_use_final_proj": True, "num_global_vectors": 0, "use_global_vector_ffn": True,
                  "use_global_self_attn": False, "separate_global_qkv": False, "global_dim_ratio": 1, **_INIT_MODES,
                  "time_embed_channels_mult": 4, "time_embed_use_scale_shift_norm": False,
                  "time_embed_dropout": 0.0}
DEFAULTS = {
    "vae": {"in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D"], "block_out_channels": [64], "layers_per_block": 1,
            "act_fn": "silu", "latent_channels": 4, "norm_num_groups": 32},
    "latent_model": {**_CUBOID_COMMON, "target_shape": None, "base_units": 256, "upsample_type": "upsample",
                     "upsample_kernel_size": 3, "use_attn_pattern": True, "ffn_activation": "leaky",
                     "padding_type": "ignore", "num_global_vectors": False, "unet_res_connect": True},
    "align": {**_CUBOID_COMMON, "out_channels": 1, "base_units": 128, "ffn_activation": "gelu",
              "padding_type": "zeros", "pool": "attention", "readout_seq": True, "t_out": None},
}
# keys MindEarth reads but that do not change the network (the VAE's data channels and its checkpoint path)
_IGNORED = {"vae": ("data_channels", "pretrained_ckpt_path"), "latent_model": (), "align": ()}
# model.diffusion keys that prediff uses, with MindEarth's defaults (src/diffusion/latent_diffusion.py LatentDiffusion);
# the others steer MindEarth's own trainer and sampler only
DIFFUSION_DEFAULTS = {"timesteps": 1000, "beta_schedule": "linear", "linear_start": 1e-4, "linear_end": 2e-2,
                      "cosine_s": 8e-3, "learn_logvar": False, "logvar_init": 0.0, "scale_factor": 1.0}
_REQUIRED = {"vae": (), "latent_model": ("input_shape", "target_shape", "depth"),
             "align": ("input_shape", "depth")}
_SECTIONS = {"vae": "model.vae", "latent_model": "model.latent_model", "align": "model.align.model_args"}


def is_mindearth_config(raw: Any) -> bool:
    """Whether a parsed YAML document is a MindEarth PreDiff config (a `model` section with its networks)."""
    model = raw.get("model") if isinstance(raw, Mapping) else None
    return isinstance(model, Mapping) and any(k in model for k in ("latent_model", "vae", "align"))


class _Translation:
    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"MindEarth config {self.source}: {key}: {message}")

    def section(self, raw: Mapping, name: str) -> Dict[str, Any]:
        where = _SECTIONS[name]
        node: Any = raw
        for part in where.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            raise self.fail(where, "missing (MindEarth builds its networks from model.vae, model.latent_model and "
                                   "model.align.model_args)")
        defaults = DEFAULTS[name]
        unknown = [k for k in node if k not in defaults and k not in _IGNORED[name]]
        if unknown:
            raise self.fail(f"{where}.{unknown[0]}", f"not an argument of MindEarth's network; valid: "
                                                     f"{', '.join(list(defaults) + list(_IGNORED[name]))}")
        values = {k: node.get(k, default) for k, default in defaults.items()}
        missing = [k for k in _REQUIRED[name] if values[k] is None]
        if missing:
            raise self.fail(f"{where}.{missing[0]}", "required (MindEarth's network has no default for it)")
        return values

    def cuboid_common(self, values: Dict[str, Any], section: str) -> Dict[str, Any]:
        """The arguments our Earthformer networks share, from a MindEarth network section."""
        where = _SECTIONS[section]
        if values["use_attn_pattern"] is not True:
            raise self.fail(f"{where}.use_attn_pattern", f"{values['use_attn_pattern']!r} is not supported; valid: "
                                                         "true (axial cuboid attention, as MindEarth's config sets); "
                                                         "explicit block_cuboid_size lists are not")
        if values["use_inter_ffn"] is not True:
            raise self.fail(f"{where}.use_inter_ffn", f"{values['use_inter_ffn']!r} is not supported; valid: true")
        padding = values["padding_type"]
        if padding not in ("zeros", "ignore"):
            raise self.fail(f"{where}.padding_type", f"{padding!r} is not supported; valid: zeros, ignore")
        out = {}
        for key in ("input_shape", "base_units", "block_units", "scale_alpha", "depth", "downsample",
                    "downsample_type", "num_heads", "attn_drop", "proj_drop", "ffn_drop", "ffn_activation",
                    "gated_ffn", "norm_layer", "use_relative_pos", "num_global_vectors", "use_global_vector_ffn",
                    "use_global_self_attn", "separate_global_qkv", "global_dim_ratio", *_INIT_MODES,
                    "time_embed_channels_mult", "time_embed_use_scale_shift_norm", "time_embed_dropout"):
            out[key] = values[key]
        out["self_attn_use_final_proj"] = values["self_attn_use_final_proj"]
        if out["num_global_vectors"] is False:  # MindEarth's UNet default; it means none
            out["num_global_vectors"] = 0
        # with axial attention every cuboid spans its axis, so no attention input is padded: MindEarth's "ignore"
        # (mask padded tokens) and "zeros" compute the same, and patch merging pads with zeros under both
        out["padding_type"] = "zeros"
        return out


def translate_mindearth_config(raw: Mapping, source: str, check: Callable[[Dict[str, Any]], Any]) -> Dict[str, Any]:
    """A prediff config document (with `base: sevirlr`) equivalent to the MindEarth config `raw` read from
    `source`; raises `ConfigError` naming the MindEarth key for anything prediff cannot reproduce. `check(doc)`
    builds the config the document describes (the loader's merge onto its base) and raises `ConfigError` for a bad
    value, which is then reported under its MindEarth name."""
    tr = _Translation(source)
    vae = tr.section(raw, "vae")
    unet_in = tr.section(raw, "latent_model")
    align_in = tr.section(raw, "align")

    # MindEarth computes the timestep sinusoid's frequencies with MindSpore's float32 exp, less accurate than the
    # official code's on CPU (4.5e-6 relative; cos(t·f) moves by up to 1e-3 near t = 1000): both networks do the same
    unet = tr.cuboid_common(unet_in, "latent_model")
    unet.update(target_shape=unet_in["target_shape"], upsample_type=unet_in["upsample_type"],
                upsample_kernel_size=unet_in["upsample_kernel_size"], unet_res_connect=unet_in["unet_res_connect"],
                block_attn_patterns=["axial"] * _levels(unet_in["depth"]), timestep_frequencies="mindearth")
    # MindEarth's UNet builds hierarchical position embeddings when asked but never applies them: leaving them out
    # computes what MindEarth computes (their tensors in its checkpoints are checked and dropped on conversion)
    unet_keys = {k: f"model.latent_model.{k}" for k in unet}
    unet_keys["block_attn_patterns"] = "model.latent_model.use_attn_pattern"

    align = tr.cuboid_common(align_in, "align")
    if align_in["hierarchical_pos_embed"]:
        raise tr.fail("model.align.model_args.hierarchical_pos_embed", "true is not supported; valid: false")
    align.update(out_channels=align_in["out_channels"], pool=align_in["pool"], readout_seq=align_in["readout_seq"],
                 out_len=align_in["t_out"], block_attn_patterns="axial", timestep_frequencies="mindearth")
    if align["out_len"] is None:  # MindEarth reads out every input frame then
        align["out_len"] = _first(align_in["input_shape"])
    align_keys = {k: f"model.align.model_args.{k}" for k in align}
    align_keys.update(out_len="model.align.model_args.t_out",
                      block_attn_patterns="model.align.model_args.use_attn_pattern")

    doc: Dict[str, Any] = {"base": BASE_PRESET, "preset": f"mindearth:{Path(source).stem}", "vae": dict(vae),
                           "unet": unet, "align": align}
    keys = {f"vae.{k}": f"model.vae.{k}" for k in vae}
    keys.update({f"unet.{k}": v for k, v in unet_keys.items()})
    keys.update({f"align.{k}": v for k, v in align_keys.items()})

    model = raw["model"]
    align_top = model.get("align") if isinstance(model.get("align"), Mapping) else {}
    if align_top.get("model_type", "cuboid") != "cuboid":
        raise tr.fail("model.align.model_type", f"{align_top.get('model_type')!r} is not supported; valid: cuboid")
    if align_top.get("guide_scale") is not None:
        doc["sample"] = {"guide_scale": align_top["guide_scale"]}
        keys["sample.guide_scale"] = "model.align.guide_scale"
    diffusion = model.get("diffusion", {})
    if not isinstance(diffusion, Mapping):
        raise tr.fail("model.diffusion", "must be a mapping")
    if diffusion.get("given_betas") is not None:
        raise tr.fail("model.diffusion.given_betas", "a list of betas is not supported; give beta_schedule, "
                                                     "linear_start and linear_end")
    if diffusion.get("scale_by_std"):
        raise tr.fail("model.diffusion.scale_by_std", "true is not supported (the scale it computes is not in the "
                                                      "checkpoints); valid: false, with scale_factor")
    doc["diffusion"] = {k: diffusion.get(k, default) for k, default in DIFFUSION_DEFAULTS.items()}
    keys.update({f"diffusion.{k}": f"model.diffusion.{k}" for k in DIFFUSION_DEFAULTS})
    doc["data"] = _data_section(raw, vae, unet)
    _validate(doc, keys, tr, check)
    return doc


def _levels(depth) -> int:
    return len(depth) if isinstance(depth, (list, tuple)) else 1


def _first(shape) -> Optional[int]:
    return shape[0] if isinstance(shape, (list, tuple)) and shape else None


def _data_section(raw: Mapping, vae: Mapping, unet: Mapping) -> Dict[str, Any]:
    """Frame size and sequence lengths as the networks process them (the latent side times the VAE's downscale)."""
    data: Dict[str, Any] = {}
    try:
        down = 2 ** (len(vae["block_out_channels"]) - 1)
        data["img_size"] = int(unet["input_shape"][1]) * down
        data["in_len"], data["out_len"] = int(unet["input_shape"][0]), int(unet["target_shape"][0])
    except (TypeError, ValueError, IndexError, KeyError):
        return data  # malformed shapes: the validation below names the key
    given = raw.get("data", {}).get("raw_seq_len") if isinstance(raw.get("data"), Mapping) else None
    data["raw_seq_len"] = max(given if isinstance(given, int) and not isinstance(given, bool) else 25,
                              data["in_len"] + data["out_len"])
    return data


def _validate(doc: Dict[str, Any], keys: Mapping[str, str], tr: _Translation, check) -> None:
    """Build the translated config once (`check`) so a bad value is reported under its MindEarth name."""
    try:
        check(doc)
    except ConfigError as exc:
        message = str(exc)
        match = re.search(r"config key '([^']+)'", message)
        if match:
            ours = re.sub(r"\[\d+\]$", "", match.group(1))
            theirs = keys.get(ours)
            if theirs is not None:
                index = match.group(1)[len(ours):]
                message = message.replace(f"config key '{match.group(1)}'", f"{theirs}{index}")
                raise ConfigError(f"MindEarth config {tr.source}: {message}") from None
        raise ConfigError(f"MindEarth config {tr.source}: {message}") from None

