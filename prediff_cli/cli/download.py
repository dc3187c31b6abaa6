"""`prediff download sevir-lr` and `prediff download synthetic`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)
from typing_extensions import Annotated

from prediff.cli.options import SeedOpt
from prediff.cli.reporting import console, echo, guarded

download_app = typer.Typer(help="Fetch SEVIR-LR or write a synthetic dataset in the same layout.",
                           no_args_is_help=True)


@download_app.command("sevir-lr")
@guarded
def sevir_lr(
    dest: Annotated[Path, typer.Option("--dest", help="Folder to create for the dataset.")] = Path("datasets/sevirlr"),
    url: Annotated[Optional[str], typer.Option(
        "--url", help="Archive URL (default: the public S3 archive, or $PREDIFF_SEVIR_LR_URL).")] = None,
    sha256: Annotated[Optional[str], typer.Option("--sha256", help="Expected SHA-256 of the archive.")] = None,
):
    """Download, verify and unpack SEVIR-LR (resumes an interrupted transfer)."""
    from prediff.data.download import check_url, download_sevir_lr, resolve_url

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
    seed: SeedOpt = None,
):
    """Write a synthetic dataset in the exact SEVIR-LR layout (same seed → same bytes)."""
    from prediff.data.synthetic import check_destination, summarize, write_synthetic_dataset

    check_destination(dest)
    with Progress(TextColumn("[bold]synthetic events"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  console=console) as progress:
        task = progress.add_task("events", total=events)
        write_synthetic_dataset(dest, events=events, seed=0 if seed is None else seed,
                                progress=lambda done, total: progress.update(task, completed=done))
    files = summarize(dest)
    size = sum(p.stat().st_size for p in Path(dest).rglob("*") if p.is_file())
    echo(f"wrote {events} events to {dest} ({len(files)} HDF5 files, {size / 1e6:.1f} MB)")


def register(app: typer.Typer) -> None:
    app.add_typer(download_app, name="download")
