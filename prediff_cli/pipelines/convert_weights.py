"""Published weights → a prediff checkpoint, number for number: the official PyTorch files (`.pt`, or `.npz` of the
same keys) and MindEarth's MindSpore checkpoints (`.ckpt`, see `pipelines.mindearth`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import prediff_models as models
from prediff import __version__
from prediff.config import Config, load_config, to_plain
from prediff.errors import InputError
from prediff.io.checkpoint import Checkpoint, file_sha256, net_weights, save_checkpoint
from prediff.io.mindspore_ckpt import looks_like_mindspore_ckpt
from prediff.io.output_dir import check_output_file
from prediff.io.state_dict_file import read_state_dict, require_finite

#: the config of official PyTorch files converted without one
OFFICIAL_PRESET = "sevirlr"


@dataclass
class ConversionReport:
    component: str
    source: Path
    output: Path
    tensors: int
    parameters: int
    source_sha256: str
    source_format: str = "pytorch"  # or "mindearth"
    preset: str = ""  # the config the network was built from
    prefix: str = ""  # MindEarth: the key prefix removed
    dropped: List[str] = field(default_factory=list)  # MindEarth: tensors it holds but never uses


def convert_weights(src: Path, component: str, config: Optional[Config], out: Path,
                    overwrite: bool = False) -> ConversionReport:
    """Read `src`, check the exact key set and shapes against the `component` network built from `config`, and
    write `out` (a `.ckpt` embedding the config).

    `src` is an official `.pt` state dict or `.npz` of the same keys (config None: the `sevirlr` preset), or a
    MindEarth `.ckpt` (config None: the preset whose network it fits). `out` must not exist unless `overwrite`, and
    is never a link, a folder or `src` itself."""
    if component not in models.COMPONENTS:
        raise InputError(f"unknown component {component!r}; valid: {', '.join(models.COMPONENTS)}")
    out = check_output_file(out, overwrite, inputs=[src], suffix=".ckpt")
    if looks_like_mindspore_ckpt(src):
        return _convert_mindearth(Path(src), component, config, out)
    config = config if config is not None else load_config(OFFICIAL_PRESET)
    state = read_state_dict(src)
    require_finite(state, src)
    kwargs = config.model_kwargs(component)
    net = models.build(component, kwargs)
    try:
        models.load_official_state_dict(net, state)
    except models.StateDictMismatch as exc:
        raise InputError(f"{src} does not fit the {component} of config '{config.preset}': {exc}") from None
    digest = file_sha256(src)
    ckpt = Checkpoint(component=component, model_kwargs=kwargs, config=to_plain(config), model=net_weights(net),
                      meta={"step": 0, "source": str(src), "source_sha256": digest,
                            "converted_by": f"prediff {__version__}"})
    save_checkpoint(out, ckpt)
    return ConversionReport(component=component, source=Path(src), output=out, tensors=len(state),
                            parameters=models.count_parameters(net), source_sha256=digest, preset=config.preset)


def _convert_mindearth(src: Path, component: str, config: Optional[Config], out: Path) -> ConversionReport:
    from .mindearth import mindearth_checkpoint, read_mindearth_network

    network = read_mindearth_network(src, component, config)
    ckpt = mindearth_checkpoint(network)
    save_checkpoint(out, ckpt)
    return ConversionReport(component=component, source=src, output=out, tensors=network.tensors,
                            parameters=models.count_parameters(network.net),
                            source_sha256=ckpt.meta["source_sha256"], source_format="mindearth",
                            preset=network.config.preset, prefix=network.prefix, dropped=network.dropped)


I3D_KWARGS = {"num_classes": 400, "in_channels": 3}


def convert_i3d(src: Path, out: Path, overwrite: bool = False) -> ConversionReport:
    """The official I3D state dict (`pretrained_i3d_400.pt`, `InceptionI3d(400, in_channels=3)`) → a prediff
    checkpoint of component "i3d"; exact key and shape check, finite float weights only. `out` as in
    `convert_weights`."""
    from prediff_models.i3d import InceptionI3d, load_i3d_state_dict

    out = check_output_file(out, overwrite, inputs=[src], suffix=".ckpt")
    state = read_state_dict(src)
    require_finite(state, src)
    net = InceptionI3d(**I3D_KWARGS)
    try:
        load_i3d_state_dict(net, state)
    except models.StateDictMismatch as exc:
        raise InputError(f"{src} is not an I3D-400 state dict: {exc}") from None
    digest = file_sha256(src)
    ckpt = Checkpoint(component="i3d", model_kwargs=dict(I3D_KWARGS), model=net_weights(net),
                      meta={"source": str(src), "source_sha256": digest, "converted_by": f"prediff {__version__}"})
    save_checkpoint(out, ckpt)
    return ConversionReport(component="i3d", source=Path(src), output=out, tensors=len(state),
                            parameters=int(sum(p.size for p in net.get_parameters())), source_sha256=digest)
