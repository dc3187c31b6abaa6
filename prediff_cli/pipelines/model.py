"""A model = the three networks trained together (VAE, UNet, alignment), their config and digests, loaded once.

Models have names: `demo` is bundled with the package; any folder under `$PREDIFF_HOME/models/` (default
`~/.cache/prediff/models/`) that holds `vae.ckpt` and `unet.ckpt` is installed under its folder name; a folder path
works everywhere a name does. `prediff export-model` and `examples/train_demo.py` write such folders.

The checkpoints are read (and hashed) when the model is loaded; the MindSpore networks are built on first use, so a
command can validate its settings against the model's config before spending time on network construction.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence

import prediff_models as models
from prediff.config import Config, config_from_dict, override_config
from prediff.config.schema import to_plain
from prediff.errors import InputError
from prediff.io.checkpoint import (Checkpoint, file_sha256, inference_checkpoint, load_checkpoint, load_weights,
                                   save_checkpoint, weights_sha256)
from prediff.io.output_dir import check_output_dir

HOME_ENV = "PREDIFF_HOME"
BUNDLED = {"demo": Path(__file__).resolve().parents[1] / "assets" / "demo"}
#: models installed by a command rather than bundled: name → the command that installs it
DOWNLOADABLE = {"sevirlr": "prediff download weights sevirlr"}
COMPONENT_FILES = {"vae": "vae.ckpt", "unet": "unet.ckpt", "align": "align.ckpt"}
OPTION_OF = {"vae": "--vae", "unet": "--unet", "align": "--align-net"}


def prediff_home() -> Path:
    """Where installed models (and the kernel cache) live: $PREDIFF_HOME, else $XDG_CACHE_HOME/prediff."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prediff"


def _is_model_dir(folder: Path) -> bool:
    return (folder / COMPONENT_FILES["vae"]).is_file() and (folder / COMPONENT_FILES["unet"]).is_file()


def installed_models() -> Dict[str, Path]:
    """name → folder of every model that `load_model` accepts by name (bundled first, then installed)."""
    found = {name: folder for name, folder in BUNDLED.items() if _is_model_dir(folder)}
    root = prediff_home() / "models"
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and _is_model_dir(folder) and folder.name not in found:
                found[folder.name] = folder
    return found


def model_folder(name_or_dir) -> Path:
    """The folder of a model given by name or path; one clear line for an unknown name."""
    text = str(name_or_dir)
    path = Path(text).expanduser()
    if path.is_dir():
        if not _is_model_dir(path):
            raise InputError(f"{path} is not a model folder: it needs vae.ckpt and unet.ckpt (align.ckpt for "
                             "alignment); `prediff export-model` writes one")
        return path
    known = installed_models()
    if text in known:
        return known[text]
    if text in BUNDLED:
        raise InputError(f"the bundled {text} model is not installed with this copy of prediff")
    if text in DOWNLOADABLE:
        raise InputError(f"the {text} model is not installed; install it with: {DOWNLOADABLE[text]}")
    names = ", ".join(known) or "none"
    raise InputError(f"unknown model {text!r}: installed models are {names}; or give a folder holding vae.ckpt and "
                     "unet.ckpt")


@dataclass
class Checkpoints:
    vae: Optional[Path] = None
    unet: Optional[Path] = None
    align: Optional[Path] = None


def check_vae_pairing(vae_ckpt: Checkpoint, vae_path: Path, vae_sha256: str, other: Checkpoint,
                      other_path: Path, option: str,
                      hint: str = "or --allow-mismatch to use them anyway") -> None:
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
                     f"--vae {vae_path}; its forecasts would be meaningless. Pass the matching --vae, {hint}")


def _build(ckpt: Checkpoint, source: Path):
    net = models.build(ckpt.component, ckpt.model_kwargs)
    load_weights(net, ckpt.weights(prefer_ema=True), source=str(source))
    net.set_train(False)
    return net


@dataclass
class Model:
    """A loaded model. `config` is the UNet checkpoint's config (the model's own settings); `paths` and `sha256`
    name the checkpoint files; `vae`, `unet`, `align` are the networks (built on first access)."""

    name: str
    paths: Checkpoints
    config: Config
    sha256: Dict[str, str]
    checkpoints: Dict[str, Checkpoint] = field(repr=False)
    dropped: Dict[str, str] = field(default_factory=dict, repr=False)  # component → why the model's file is unused
    _nets: Dict[str, object] = field(default_factory=dict, repr=False)
    #: (settings, Forecaster) of the last forecast, reused by the next one with the same settings (`forecast`)
    forecaster_cache: Optional[tuple] = field(default=None, repr=False, compare=False)

    @classmethod
    def from_networks(cls, config: Config, vae, unet, align=None, name: str = "in-memory") -> "Model":
        """A model around networks built in this process (benchmarks, experiments); nothing is read from disk."""
        nets = {"vae": vae, "unet": unet, **({"align": align} if align is not None else {})}
        return cls(name=name, paths=Checkpoints(), config=config, sha256={}, checkpoints={}, _nets=nets)

    @property
    def has_align(self) -> bool:
        return "align" in self.checkpoints or "align" in self._nets

    def network(self, component: str):
        if component in self._nets:
            return self._nets[component]
        if component not in self.checkpoints:
            why = f"model {self.name}: {self.dropped[component]}" if component in self.dropped else \
                f"model {self.name} has no alignment network (align.ckpt)"
            raise InputError(f"{why}; pass --align-net CKPT or forecast with --align none")
        self._nets[component] = _build(self.checkpoints[component], getattr(self.paths, component))
        return self._nets[component]

    @property
    def vae(self):
        return self.network("vae")

    @property
    def unet(self):
        return self.network("unet")

    @property
    def align(self):
        return self.network("align") if self.has_align else None

    def forecast(self, context, **options):
        """Ensemble forecast as an `xarray.Dataset` (the NetCDF that `prediff sample` writes); see
        `prediff.api.forecast` for the arguments."""
        # the API module sits above the pipelines (it imports them): importing it here keeps the layers one-way
        from prediff.api import forecast

        return forecast(self, context, **options)


def load_model(name_or_dir="demo", *, vae=None, unet=None, align=None, allow_mismatch: bool = False) -> Model:
    """Read a model's checkpoints (a name, a folder, and/or per-network checkpoint files) and check that the UNet
    and the alignment network were trained on the VAE (unless `allow_mismatch`)."""
    folder = None
    if vae is None or unet is None or align is None:  # the model fills what the per-network options leave out
        try:
            folder = model_folder(name_or_dir)
        except InputError:
            if vae is None or unet is None:
                raise
    given = {"vae": vae, "unet": unet, "align": align}
    paths = Checkpoints()
    for component, filename in COMPONENT_FILES.items():
        path = given[component] or (folder / filename if folder is not None else None)
        if path is not None and not Path(path).is_file():
            if given[component] is not None or component != "align":
                raise InputError(f"no checkpoint for {OPTION_OF[component]}: {path} does not exist")
            path = None
        setattr(paths, component, Path(path) if path is not None else None)
    checkpoints = {c: load_checkpoint(getattr(paths, c), component=c) for c in COMPONENT_FILES
                   if getattr(paths, c) is not None}
    sha256 = {c: file_sha256(getattr(paths, c)) for c in checkpoints}
    unet_ckpt = checkpoints["unet"]
    dropped = {}
    if align is None and "align" in checkpoints and (vae is not None or unet is not None):
        # the model folder's alignment network fills in for one not given; when the networks given replace the
        # ones it was trained with, it is left out (a forecast with --align none needs none) rather than refused
        reason = _unfit_align(checkpoints, paths, sha256, allow_mismatch)
        if reason:
            dropped["align"] = reason
            del checkpoints["align"], sha256["align"]
            paths.align = None
    latent = int(checkpoints["vae"].model_kwargs["latent_channels"])
    if unet_ckpt.model_kwargs["input_shape"][-1] != latent:
        raise InputError(f"--unet {paths.unet} expects {unet_ckpt.model_kwargs['input_shape'][-1]} latent channels "
                         f"but --vae {paths.vae} produces {latent}")
    if "align" in checkpoints and \
            list(checkpoints["align"].model_kwargs["input_shape"]) != list(unet_ckpt.model_kwargs["target_shape"]):
        raise InputError(f"--align-net {paths.align} takes latents {checkpoints['align'].model_kwargs['input_shape']} "
                         f"but the UNet produces {unet_ckpt.model_kwargs['target_shape']}")
    if not allow_mismatch:
        for component in ("unet", "align"):
            if component in checkpoints:
                check_vae_pairing(checkpoints["vae"], paths.vae, sha256["vae"], checkpoints[component],
                                  getattr(paths, component), OPTION_OF[component])
    if not unet_ckpt.config:
        raise InputError(f"{paths.unet} carries no config; re-save it with this version of prediff")
    name = str(name_or_dir) if folder is not None else "custom"
    return Model(name=name, paths=paths, config=config_from_dict(unet_ckpt.config), sha256=sha256,
                 checkpoints=checkpoints, dropped=dropped)


def _unfit_align(checkpoints: Dict[str, Checkpoint], paths: Checkpoints, sha256: Dict[str, str],
                 allow_mismatch: bool) -> Optional[str]:
    """Why the alignment checkpoint cannot serve the given VAE and UNet (None when it can)."""
    align, unet = checkpoints["align"], checkpoints["unet"]
    if list(align.model_kwargs["input_shape"]) != list(unet.model_kwargs["target_shape"]):
        return (f"its alignment network {paths.align} takes latents {align.model_kwargs['input_shape']}, not the "
                f"UNet's {unet.model_kwargs['target_shape']}")
    if not allow_mismatch:
        try:
            check_vae_pairing(checkpoints["vae"], paths.vae, sha256["vae"], align, paths.align, "--align-net")
        except InputError:
            return f"its alignment network {paths.align} was trained with another VAE than --vae {paths.vae}"
    return None


def run_checkpoints(runs) -> Dict[str, Path]:
    """component → the checkpoint to export from training run folders (or .ckpt files): each run's best.ckpt, else
    its last.ckpt; for the VAE, the file the UNet was trained on when that file is one of the VAE run's."""
    candidates: Dict[str, list] = {}
    for run in map(Path, runs):
        paths = [run] if run.is_file() else [run / n for n in ("best.ckpt", "last.ckpt") if (run / n).is_file()]
        if not paths:
            raise InputError(f"{run} holds no best.ckpt or last.ckpt (give training run folders or .ckpt files)")
        component = load_checkpoint(paths[0]).component
        if component in candidates:
            raise InputError(f"two {component} checkpoints given: {candidates[component][0]} and {paths[0]}")
        candidates[component] = paths
    found = {c: paths[0] for c, paths in candidates.items()}
    recorded = load_checkpoint(found["unet"]).meta.get("vae_checkpoint") if "unet" in found else None
    if isinstance(recorded, dict) and "vae" in candidates:
        trained_on = [p for p in candidates["vae"] if Path(p).resolve() == Path(recorded.get("path", "")).resolve()]
        found["vae"] = trained_on[0] if trained_on else found["vae"]
    return found


def _with_sample_settings(ckpt: Checkpoint, sets: Sequence[str]) -> Checkpoint:
    """`ckpt` with `sample.KEY=VALUE` overrides applied to its config (validated like any --set)."""
    if not sets:
        return ckpt
    config = override_config(config_from_dict(ckpt.config), list(sets))
    return dataclasses.replace(ckpt, config=to_plain(config))


def export_model(checkpoints: Dict[str, Path], out: Path, overwrite: bool = False,
                 sample_sets: Sequence[str] = ()) -> Dict[str, Path]:
    """Write the inference copies (EMA weights, config, no optimizer state) of training checkpoints into a model
    folder `out` as vae.ckpt, unet.ckpt and (optionally) align.ckpt; returns component → written path.

    `sample_sets` (`sample.KEY=VALUE`) change the model's default forecast settings, which `prediff sample` and
    `prediff score` start from (the UNet checkpoint's config); nothing else of a trained config may change."""
    missing = [c for c in ("vae", "unet") if c not in checkpoints]
    if missing:
        raise InputError(f"a model needs a {' and a '.join(missing)} checkpoint; give the run folders of "
                         "train-vae and train-diffusion (and train-align)")
    wrong = [item for item in sample_sets if not item.strip().startswith("sample.")]
    if wrong:
        raise InputError(f"export-model --set changes only the default forecast settings (sample.KEY=VALUE); got "
                         f"{wrong[0]!r}")
    check_output_dir(out, [COMPONENT_FILES[c] for c in checkpoints], overwrite, what="a model")
    loaded = {c: _with_sample_settings(load_checkpoint(p, component=c), sample_sets) for c, p in checkpoints.items()}
    vae_sha = file_sha256(checkpoints["vae"])
    for component in ("unet", "align"):
        if component in loaded:
            check_vae_pairing(loaded["vae"], checkpoints["vae"], vae_sha, loaded[component], checkpoints[component],
                              OPTION_OF[component], hint="the VAE run (or .ckpt) it was trained with")
    return {c: save_checkpoint(Path(out) / COMPONENT_FILES[c], inference_checkpoint(ckpt))
            for c, ckpt in loaded.items()}
