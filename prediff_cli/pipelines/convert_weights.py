"""Official PyTorch weights → a prediff checkpoint, number for number."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import prediff_models as models
from prediff import __version__
from prediff.config import Config, to_plain
from prediff.errors import InputError
from prediff.io.checkpoint import Checkpoint, file_sha256, net_weights, save_checkpoint
from prediff.io.state_dict_file import read_state_dict, require_finite


@dataclass
class ConversionReport:
    component: str
    source: Path
    output: Path
    tensors: int
    parameters: int
    source_sha256: str


def convert_weights(src: Path, component: str, config: Config, out: Path) -> ConversionReport:
    """Read `src` (official `.pt` state dict or `.npz` of the same keys), check the exact key set and shapes
    against the `component` network built from `config`, and write `out` (a `.ckpt` embedding the config)."""
    if component not in models.COMPONENTS:
        raise InputError(f"unknown component {component!r}; valid: {', '.join(models.COMPONENTS)}")
    out = Path(out)
    if out.suffix != ".ckpt":
        raise InputError(f"--out must name a .ckpt file, got {out}")
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
                            parameters=models.count_parameters(net), source_sha256=digest)


I3D_KWARGS = {"num_classes": 400, "in_channels": 3}


def convert_i3d(src: Path, out: Path) -> ConversionReport:
    """The official I3D state dict (`pretrained_i3d_400.pt`, `InceptionI3d(400, in_channels=3)`) → a prediff
    checkpoint of component "i3d"; exact key and shape check, finite float weights only."""
    from prediff_models.i3d import InceptionI3d, load_i3d_state_dict

    out = Path(out)
    if out.suffix != ".ckpt":
        raise InputError(f"--out must name a .ckpt file, got {out}")
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
