"""Where models live and which names `--model NAME` accepts.

`demo` is bundled with the package; any folder under `$PREDIFF_HOME/models/` (default `~/.cache/prediff/models/`)
that holds `vae.ckpt` and `unet.ckpt` is installed under its folder name; a folder path works everywhere a name
does. Folders whose names start with a dot are never models (an unfinished installation of an older prediff kept
its staging folder there). `list_models` reads each model's UNet checkpoint and names the folders it skipped and
why, so one damaged model never hides the others.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Tuple

from prediff.errors import InputError, PrediffError

HOME_ENV = "PREDIFF_HOME"
BUNDLED = {"demo": Path(__file__).resolve().parents[1] / "assets" / "demo"}
#: models installed by a command rather than bundled: name → the command that installs it
DOWNLOADABLE = {"sevirlr": "prediff download weights sevirlr"}
COMPONENT_FILES = {"vae": "vae.ckpt", "unet": "unet.ckpt", "align": "align.ckpt"}


def prediff_home() -> Path:
    """Where installed models, downloads and scoring networks live: $PREDIFF_HOME, else $XDG_CACHE_HOME/prediff."""
    if os.environ.get(HOME_ENV):
        return _expand(os.environ[HOME_ENV], f"${HOME_ENV}")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prediff"


def _expand(text: str, what: str) -> Path:
    """`text` as a path with `~` / `~user` expanded; one line for a user that does not exist."""
    try:
        return Path(text).expanduser()
    except RuntimeError:  # pathlib's "Could not determine home directory" for ~nosuchuser
        user = text[1:].split("/", 1)[0].split(os.sep, 1)[0]
        raise InputError(f"{what} {text!r} starts with ~{user}, but there is no user {user!r} whose home folder "
                         "it could name") from None


def _is_model_dir(folder: Path) -> bool:
    return (folder / COMPONENT_FILES["vae"]).is_file() and (folder / COMPONENT_FILES["unet"]).is_file()


def _missing(folder: Path) -> List[str]:
    return [COMPONENT_FILES[c] for c in ("vae", "unet") if not (folder / COMPONENT_FILES[c]).is_file()]


def installed_models() -> Dict[str, Path]:
    """name → folder of every model that `load_model` accepts by name (bundled first, then installed)."""
    found = {name: folder for name, folder in BUNDLED.items() if _is_model_dir(folder)}
    root = prediff_home() / "models"
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if not folder.name.startswith(".") and folder.is_dir() and _is_model_dir(folder) \
                    and folder.name not in found:
                found[folder.name] = folder
    return found


def model_folder(name_or_dir) -> Path:
    """The folder of a model given by name or path; one clear line for an unknown name."""
    text = str(name_or_dir)
    path = _expand(text, "--model")
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


def list_models() -> Tuple[List[dict], List[Tuple[str, str]]]:
    """The complete models, one dict each (name, folder, networks present, training steps, the config's preset),
    and the folders under `$PREDIFF_HOME/models` that are not models, as (folder, why) pairs."""
    from prediff.io.checkpoint import load_checkpoint  # MindSpore loads only when models are listed

    rows, skipped = [], []
    candidates = dict(installed_models())
    root = prediff_home() / "models"
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if folder.name in candidates and candidates[folder.name] == folder:
                continue
            if folder.name.startswith("."):
                skipped.append((str(folder), "a hidden folder (an unfinished installation), not a model"))
            elif not folder.is_dir():
                skipped.append((str(folder), "not a folder"))
            elif folder.name in candidates:
                skipped.append((str(folder), f"its name is taken by the bundled {folder.name} model"))
            else:
                skipped.append((str(folder), f"no {' or '.join(_missing(folder))}"))
    for name, folder in candidates.items():
        try:
            unet = load_checkpoint(folder / COMPONENT_FILES["unet"], component="unet")
        except PrediffError as exc:
            skipped.append((str(folder), str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a damaged file of one model must not hide the others
            skipped.append((str(folder), f"unet.ckpt is unreadable ({type(exc).__name__}: {exc})"))
            continue
        present = [c for c, f in COMPONENT_FILES.items() if (folder / f).is_file()]
        rows.append({"name": name, "folder": str(folder), "networks": present, "unet_step": unet.meta.get("step"),
                     "preset": (unet.config or {}).get("preset")})
    return rows, skipped


#: the command-line option that gives each component's checkpoint file
OPTION_OF = {"vae": "--vae", "unet": "--unet", "align": "--align-net"}
#: the name of a model put together from checkpoint files given one by one (--vae/--unet/--align-net)
CUSTOM = "custom"
