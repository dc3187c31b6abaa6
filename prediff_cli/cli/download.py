"""`prediff download sevir-lr`, `prediff download synthetic` and `prediff download weights [sevirlr|i3d]`."""
from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import typer
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)
from typing_extensions import Annotated

from prediff.cli.reporting import console, echo, guarded

download_app = typer.Typer(help="Fetch SEVIR-LR or write a synthetic dataset in the same layout.",
                           no_args_is_help=True)


@contextmanager
def _file_bars() -> Iterator[Callable[[str, int, Optional[int]], None]]:
    """One download bar per file (name printed verbatim), shown from the first report on (a run that downloads
    nothing prints no empty display); yields `report(file, bytes done, total or None)`."""
    bars: list = []  # the display, once started
    tasks: dict = {}

    def report(file: str, done: int, total: Optional[int]) -> None:
        if not bars:
            bars.append(Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console))
            bars[0].start()
        if file not in tasks:
            tasks[file] = bars[0].add_task(file, total=total)
        bars[0].update(tasks[file], completed=done, total=total)

    try:
        yield report
    finally:
        if bars:
            bars[0].stop()


@download_app.command("sevir-lr")
@guarded
def sevir_lr(
    dest: Annotated[Path, typer.Option("--dest", help="Folder to create for the dataset.")] = Path("datasets/sevirlr"),
    url: Annotated[Optional[str], typer.Option(
        "--url", metavar="URL", help="Archive URL (default: the public S3 archive, or $PREDIFF_SEVIR_LR_URL).")
    ] = None,
    sha256: Annotated[Optional[str], typer.Option("--sha256", metavar="HEX", help="Expected SHA-256 of the "
                                                  "archive.")] = None,
):
    """Download, verify and unpack SEVIR-LR (resumes an interrupted transfer)."""
    from prediff.data.download import download_sevir_lr, resolve_url
    from prediff.io.http_fetch import check_url

    check_url(resolve_url(url))
    echo(f"downloading {resolve_url(url)}")
    with Progress(TextColumn("[bold]sevir_lr.zip"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=console) as progress:
        task = progress.add_task("download", total=None)

        def report(done: int, total: Optional[int]) -> None:
            progress.update(task, completed=done, total=total)

        count = download_sevir_lr(dest, url=url, sha256=sha256, progress=report)
    echo(f"installed SEVIR-LR at {dest} ({count} VIL files)")


@download_app.command("synthetic")
@guarded
def synthetic(
    dest: Annotated[Path, typer.Option("--dest", help="Folder to create for the dataset.")] = Path("datasets/synthetic"),
    events: Annotated[int, typer.Option("--events", min=1, help="Number of storm events.")] = 48,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the storms.")] = 0,
):
    """Write a synthetic dataset in the exact SEVIR-LR layout (same seed → same bytes)."""
    from prediff.data.synthetic import check_destination, summarize, write_synthetic_dataset

    check_destination(dest)
    with Progress(TextColumn("[bold]synthetic events"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  console=console) as progress:
        task = progress.add_task("events", total=events)
        write_synthetic_dataset(dest, events=events, seed=seed,
                                progress=lambda done, total: progress.update(task, completed=done))
    files = summarize(dest)
    size = sum(p.stat().st_size for p in Path(dest).rglob("*") if p.is_file())
    echo(f"wrote {events} events to {dest} ({len(files)} HDF5 files, {size / 1e6:.1f} MB)")


class Component(str, Enum):
    vae = "vae"
    unet = "unet"
    align = "align"
    all = "all"


class WeightSource(str, Enum):
    official = "official"
    gdrive = "gdrive"
    mirror = "mirror"


@download_app.command("weights")
@guarded(oom_hint="the conversion holds one network at a time; free memory and run again (downloads resume)")
def weights(
    model: Annotated[str, typer.Argument(
        metavar="sevirlr|i3d",
        help="Published model to install (sevirlr), or i3d: the video network of the FVD score.")] = "sevirlr",
    component: Annotated[Component, typer.Option("--component", help="Which network to install.")] = Component.all,
    source: Annotated[Optional[WeightSource], typer.Option(
        "--source", help="Fetch from this source only (default: the mirror when given, then the official "
                         "SharePoint links, then Google Drive; endpoints: $PREDIFF_SHAREPOINT_URL, "
                         "$PREDIFF_GDRIVE_URL).")] = None,
    url_base: Annotated[Optional[str], typer.Option(
        "--url-base", metavar="URL", help="A mirror serving the official file names, tried first (default: "
                                          "$PREDIFF_WEIGHTS_URL).")] = None,
    from_paths: Annotated[Optional[List[Path]], typer.Option(
        "--from", metavar="PATH", help="Install from files you fetched by hand: a folder holding them under their "
                                       "official names, or the files; repeatable. Nothing is downloaded.")] = None,
    sha256: Annotated[Optional[List[str]], typer.Option(
        "--sha256", metavar="NAME=HEX", help="Expected SHA-256 of a file (official name or vae/unet/align); it "
                                             "replaces the size check for that file; repeatable.")] = None,
    keep_source: Annotated[bool, typer.Option(
        "--keep-source", help="Keep the downloaded PyTorch files (default: deleted after a verified conversion).")
    ] = False,
):
    """Download the published PreDiff weights and install them as a model: `--model sevirlr` then uses them.
    `weights i3d` installs the I3D network with which `prediff score` computes the FVD. Each source that fails
    prints one line and the next is tried; when all fail, the last line says which files to fetch by hand for
    `--from`."""
    from prediff.pipelines.published_weights import FEATURE_NETWORKS, install_weights, parse_digests

    digests = parse_digests(sha256 or [])
    chosen = source.value if source is not None else None
    if model in FEATURE_NETWORKS:
        _feature_network(model, chosen, url_base, from_paths, digests, keep_source)
        return
    components = ("vae", "unet", "align") if component == Component.all else (component.value,)
    with _file_bars() as report:
        result = install_weights(model, components, url_base=url_base, source=chosen, from_paths=from_paths,
                                 sha256=digests, keep_source=keep_source, progress=report, notify=echo)
    if not result["installed"]:
        echo(f"{model} is already installed in {result['folder']} ({', '.join(result['skipped'])}); nothing to do")
    elif result["published"]:
        echo(f"installed {', '.join(result['installed'])} of {model} in {result['folder']}; use --model {model}")
    else:
        echo(f"converted {', '.join(result['installed'])} of {model} into {result['folder']}; the model also needs "
             "the vae and unet: prediff download weights --component all")


def _feature_network(name: str, source: Optional[str], url_base: Optional[str], from_paths, digests: dict,
                     keep_source: bool) -> None:
    from prediff.pipelines.published_weights import FEATURE_NETWORKS, install_feature_network

    spec = FEATURE_NETWORKS[name]
    expected = digests.get(spec.file.name, digests.get(name))
    with _file_bars() as report:
        result = install_feature_network(name, url_base=url_base, source=source, from_paths=from_paths,
                                         sha256=expected, keep_source=keep_source, progress=report, notify=echo)
    if result["installed"]:
        echo(f"installed {name} in {result['folder']}; `prediff score` now reports the FVD")
    else:
        echo(f"{name} is already installed in {result['folder']}; nothing to do")


def register(app: typer.Typer) -> None:
    app.add_typer(download_app, name="download")
