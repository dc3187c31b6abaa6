"""A model = the three networks trained together (VAE, UNet, alignment), their config and digests, loaded once.

Models are found by name or folder through `model_store` (the bundled `demo`, folders under
`$PREDIFF_HOME/models/`); `prediff export-model` and `examples/train_demo.py` write such folders.

The checkpoints are read (and hashed) when the model is loaded; the MindSpore networks are built on first use, so a
command can validate its settings against the model's config before spending time on network construction.
"""
from __future__ import annotations

import dataclasses
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
from prediff.io.publish import publish_folder, staging_folder

from .forecast import forecast
from .model_store import COMPONENT_FILES, CUSTOM, OPTION_OF, model_folder


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
    """A loaded model: the three networks of one PreDiff model, their settings and the digests of their files.

    Made by `load_model`; its networks are built from the checkpoints on first use, so loading is cheap and a
    model used without alignment never builds its alignment network.

    Attributes
    ----------
    name : str
        The name or folder it was loaded by, or `CUSTOM` ("custom") when checkpoint files given one by one
        replace any of its networks.
    paths : Checkpoints
        The checkpoint files (`paths.vae`, `paths.unet`, `paths.align`; `align` None when the model has none).
    config : prediff.config.Config
        The model's own settings, stored in its UNet checkpoint: the networks, the diffusion schedule and the
        default forecast settings (`config.sample`) that `forecast` starts from.
    sha256 : dict of str to str
        Component ("vae", "unet", "align") → SHA-256 of its checkpoint file, as recorded in forecasts.
    vae, unet, align : mindspore.nn.Cell
        The networks, in inference mode (`align` is None for a model without an alignment network).
    has_align : bool
        Whether the model can forecast with knowledge alignment (`align="avg_x"`).

    Examples
    --------
    >>> import prediff
    >>> model = prediff.load_model("demo")
    >>> fc = model.forecast(prediff.read_radar("examples/radar.h5"), samples=2, steps=4, seed=0)
    >>> fc["vil"].shape                        # (member, time, y, x), digital VIL 0-255
    (2, 6, 128, 128)
    """

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
        """An ensemble forecast from `context`, as an `xarray.Dataset`: `prediff.forecast(self, context, ...)`.

        Parameters
        ----------
        context : RadarInput or array_like
            The observed frames: what `prediff.read_radar` returns, or an array as `prediff.forecast` takes it.
        **options
            The keyword options of `prediff.forecast` (`samples`, `sampler`, `steps`, `eta`, `align`, `seed`, ...).

        Returns
        -------
        xarray.Dataset
            The variables, coordinates and attributes of the `forecast.nc` that `prediff sample` writes: `vil`
            (member, time, y, x) on the digital scale 0–255, `vil_kg_m2` in kg m-2, `exceedance_probability`
            (threshold, time, y, x), the context frames, valid times and the map grid.
        """
        return forecast(self, context, **options)


def load_model(name_or_dir="demo", *, vae=None, unet=None, align=None, allow_mismatch: bool = False) -> Model:
    """Load a model: its three checkpoints, checked against each other.

    Parameters
    ----------
    name_or_dir : str or path-like, default "demo"
        A model name that `prediff models` lists (the bundled "demo", or a folder under `$PREDIFF_HOME/models/`
        such as "sevirlr") or the path of a model folder holding vae.ckpt, unet.ckpt and (optionally) align.ckpt.
    vae, unet, align : path-like, optional
        Checkpoint files that replace the model's networks one by one (the `--vae`, `--unet`, `--align-net`
        options); when both `vae` and `unet` are given, `name_or_dir` only supplies the alignment network, if any.
    allow_mismatch : bool, default False
        Accept a UNet or alignment network whose checkpoint records another VAE than the one given.

    Returns
    -------
    Model
        The model; its networks are built on first use.

    Raises
    ------
    prediff.errors.InputError
        An unknown name (the message lists the installed ones), a missing or unreadable checkpoint, networks
        whose shapes do not fit together, or (without `allow_mismatch`) a UNet or alignment network trained on
        another VAE.
    """
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
    # networks given one by one make another model than the named one (and the demo's note would not apply)
    name = str(name_or_dir) if folder is not None and all(v is None for v in given.values()) else CUSTOM
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


#: a model folder's card (where it came from: sources, digests, config), written by the commands that install models
MODEL_CARD = "model.json"


def export_model(checkpoints: Dict[str, Path], out: Path, overwrite: bool = False,
                 sample_sets: Sequence[str] = ()) -> Dict[str, Path]:
    """Write the inference copies (EMA weights, config, no optimizer state) of training checkpoints into a model
    folder `out` as vae.ckpt, unet.ckpt and (optionally) align.ckpt; returns component → written path.

    `sample_sets` (`sample.KEY=VALUE`) change the model's default forecast settings, which `prediff sample` and
    `prediff score` start from (the UNet checkpoint's config); nothing else of a trained config may change.
    Every input is read and checked before anything is written; the folder is then published whole (`io.publish`):
    with `overwrite` an earlier model there is replaced entirely (its align.ckpt too when none is exported), and a
    failure leaves it as it was."""
    missing = [c for c in ("vae", "unet") if c not in checkpoints]
    if missing:
        raise InputError(f"a model needs a {' and a '.join(missing)} checkpoint; give the run folders of "
                         "train-vae and train-diffusion (and train-align)")
    wrong = [item for item in sample_sets if not item.strip().startswith("sample.")]
    if wrong:
        raise InputError(f"export-model --set changes only the default forecast settings (sample.KEY=VALUE); got "
                         f"{wrong[0]!r}")
    names = [*COMPONENT_FILES.values(), MODEL_CARD]  # an earlier model's files, its card included, go as a whole
    check_output_dir(out, names, overwrite, what="a model", inputs=list(checkpoints.values()))
    loaded = {c: _with_sample_settings(load_checkpoint(p, component=c), sample_sets) for c, p in checkpoints.items()}
    vae_sha = file_sha256(checkpoints["vae"])
    for component in ("unet", "align"):
        if component in loaded:
            check_vae_pairing(loaded["vae"], checkpoints["vae"], vae_sha, loaded[component], checkpoints[component],
                              OPTION_OF[component], hint="the VAE run (or .ckpt) it was trained with")
    with staging_folder(out) as staging:
        for component, ckpt in loaded.items():
            save_checkpoint(staging / COMPONENT_FILES[component], inference_checkpoint(ckpt))
        publish_folder(staging, out, names)
    return {c: Path(out) / COMPONENT_FILES[c] for c in loaded}
