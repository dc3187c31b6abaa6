"""A synthetic dataset in the exact SEVIR-LR on-disk layout, with plausible storms.

Each event (128 × 128 pixels of 3 km, 25 frames 10 minutes apart) is a small set of convective cells carried by
one smooth flow: a uniform steering wind of 1-3.5 px per frame plus a weak solid-body rotation. Cells are
anisotropic two-scale Gaussians (a core inside a broader anvil) that grow and decay along a half-sine life cycle;
a smooth multiplicative texture advected with the same wind breaks their symmetry; some events add a weak,
broad stratiform shield. Intensities are accumulated on the digital VIL scale and clipped to 254, giving a
VIL-like distribution: most pixels near 0, a tail beyond 219 in the strongest cores. Motion is coherent over the
whole event, so 7 context frames determine the future well — what a forecast model and an optical-flow baseline
can learn and exploit.

Everything is drawn from `numpy.random.default_rng([seed, event])`, HDF5 files are written without timestamps
and the catalog in a fixed order: the same seed gives the same bytes.
"""
from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import h5py
import numpy as np
from scipy import ndimage

from prediff.errors import DownloadError
from prediff.io.atomic import atomic_path, fsync_dir, fsync_file
from prediff.io.grid import SEVIR_PROJ, box_around

SIZE = 128
FRAMES = 25
CATALOG_COLUMNS = ("id", "file_name", "file_index", "img_type", "time_utc", "minute_offsets", "episode_id",
                   "event_id", "event_type", "llcrnrlat", "llcrnrlon", "urcrnrlat", "urcrnrlon", "proj", "size_x",
                   "size_y", "height_m", "width_m", "data_min", "data_max", "pct_missing")
EVENT_TYPES = ("Thunderstorm Wind", "Hail", "Heavy Rain", "Flash Flood", "Tornado")
# SEVIR's 49 five-minute frames span -120..+120 minutes around time_utc; SEVIR-LR keeps every other one.
MINUTE_OFFSETS = ":".join(str(m) for m in range(-120, 121, 10))


@dataclass
class _Cell:
    x: float
    y: float
    radius: float
    aspect: float
    angle: float
    peak: float
    birth: float
    life: float


def storm_event(rng: np.random.Generator, frames: int = FRAMES, size: int = SIZE) -> np.ndarray:
    """One synthetic event as digital VIL, uint8 (size, size, frames) — SEVIR's H × W × T layout."""
    speed = rng.uniform(1.0, 3.5)
    heading = rng.uniform(0.0, 2 * np.pi)
    u, v = speed * np.cos(heading), speed * np.sin(heading)  # px / frame (x to the right, y down)
    spin = rng.uniform(-0.004, 0.004)  # rad / frame of solid-body rotation about the image centre
    centre = (size - 1) / 2.0
    n_cells = 2 + rng.poisson(2.5)
    cells = []
    for _ in range(n_cells):
        # start so that the cell's track crosses the image during the event (some enter from upstream)
        cells.append(_Cell(x=rng.uniform(0.05, 0.95) * size - u * frames * rng.uniform(0.0, 0.6),
                           y=rng.uniform(0.05, 0.95) * size - v * frames * rng.uniform(0.0, 0.6),
                           radius=rng.uniform(4.0, 14.0), aspect=rng.uniform(1.0, 2.2),
                           angle=rng.uniform(0, np.pi), peak=40.0 + 250.0 * rng.beta(1.6, 2.0),
                           birth=rng.uniform(-30.0, 12.0), life=rng.uniform(25.0, 70.0)))
    stratiform = rng.random() < 0.3
    if stratiform:
        shield = _Cell(x=rng.uniform(0.25, 0.75) * size, y=rng.uniform(0.25, 0.75) * size,
                       radius=rng.uniform(18.0, 32.0), aspect=rng.uniform(1.2, 2.2), angle=rng.uniform(0, np.pi),
                       peak=rng.uniform(10.0, 28.0), birth=rng.uniform(-30.0, 0.0), life=rng.uniform(50.0, 90.0))
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=5.0, mode="wrap")
    texture = 1.0 + 0.3 * texture / (texture.std() + 1e-9)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.zeros((size, size, frames), dtype=np.uint8)
    for t in range(frames):
        field = np.zeros((size, size))
        blobs = cells + ([shield] if stratiform else [])
        for i, c in enumerate(blobs):
            age = (t - c.birth) / c.life
            if not 0.0 < age < 1.0:
                continue
            envelope = np.sin(np.pi * age) ** 1.5
            # position: steering wind plus rotation about the centre, integrated from t = 0
            px, py = c.x + u * t, c.y + v * t
            ang = spin * t
            dx0, dy0 = px - centre, py - centre
            px = centre + dx0 * np.cos(ang) - dy0 * np.sin(ang)
            py = centre + dx0 * np.sin(ang) + dy0 * np.cos(ang)
            ca, sa = np.cos(c.angle + ang), np.sin(c.angle + ang)
            dx, dy = xx - px, yy - py
            along, across = dx * ca + dy * sa, -dx * sa + dy * ca
            r2 = (along / (c.radius * c.aspect)) ** 2 + (across / c.radius) ** 2
            if i < len(cells):
                shape = 0.55 * np.exp(-0.5 * r2) + 0.45 * np.exp(-0.5 * r2 * 9.0)
            else:
                shape = np.exp(-0.5 * r2)
            field += c.peak * envelope * shape
        # texture advected with the steering wind (wrap-around keeps it seamless)
        moved = ndimage.shift(texture, (v * t, u * t), order=1, mode="wrap")
        field *= np.clip(moved, 0.3, 1.8)
        field[field < 4.0] = 0.0
        out[:, :, t] = np.clip(np.rint(field), 0, 254).astype(np.uint8)
    return out


def _event_time(rng: np.random.Generator, index: int, n_events: int) -> dt.datetime:
    """Spread events over 2017-2019 with about a quarter after the 2019-06-01 test boundary."""
    start = dt.datetime(2017, 4, 1)
    boundary = dt.datetime(2019, 6, 1)
    end = dt.datetime(2019, 10, 31)
    n_test = max(1, n_events // 4)
    if index >= n_events - n_test:
        lo, hi = boundary + dt.timedelta(days=1), end
    else:
        lo, hi = start, boundary - dt.timedelta(days=1)
    seconds = rng.uniform(0, (hi - lo).total_seconds())
    when = lo + dt.timedelta(seconds=float(seconds))
    return when.replace(minute=(when.minute // 5) * 5, second=0, microsecond=0)


def _file_name(when: dt.datetime) -> str:
    half = "0101_0630" if when.month <= 6 else "0701_1231"
    return f"vil/{when.year}/SEVIR_VIL_STORMEVENTS_{when.year}_{half}.h5"


def check_destination(dest: Path) -> None:
    """Refuse to write over an existing, non-empty destination."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(f"destination {dest} already exists and is not empty; choose another --dest")


def write_synthetic_dataset(dest, events: int = 48, seed: int = 0,
                            progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """Write `events` synthetic events as a SEVIR-LR tree at `dest` (which must not exist or be empty)."""
    dest = Path(dest)
    if events < 1:
        raise DownloadError(f"--events must be at least 1, got {events}")
    check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        rows, per_file = [], defaultdict(list)
        for i in range(events):
            rng = np.random.default_rng([seed, i])
            when = _event_time(rng, i, events)
            lat, lon = rng.uniform(30.0, 45.0), rng.uniform(-105.0, -82.0)
            grid = box_around(lat, lon)
            vil = storm_event(rng)
            event_id = f"S{800000 + i:06d}"
            name = _file_name(when)
            per_file[name].append((event_id, vil))
            rows.append(dict(id=event_id, file_name=name, file_index=len(per_file[name]) - 1, img_type="vil",
                             time_utc=when.strftime("%Y-%m-%d %H:%M:%S"), minute_offsets=MINUTE_OFFSETS,
                             episode_id=100000 + i, event_id=700000 + i,
                             event_type=EVENT_TYPES[int(rng.integers(len(EVENT_TYPES)))],
                             llcrnrlat=f"{grid.llcrnrlat:.6f}", llcrnrlon=f"{grid.llcrnrlon:.6f}",
                             urcrnrlat=f"{grid.urcrnrlat:.6f}", urcrnrlon=f"{grid.urcrnrlon:.6f}", proj=SEVIR_PROJ,
                             size_x=SIZE, size_y=SIZE, height_m=384000, width_m=384000, data_min=int(vil.min()),
                             data_max=int(vil.max()), pct_missing=0))
            if progress:
                progress(i + 1, events)
        # rows the official filters must drop: another modality of an event, a row with missing data and a
        # duplicated id (SEVIR's duplicate-id events are removed entirely)
        first = rows[0]
        extra = [dict(first, img_type="ir069", file_name=first["file_name"].replace("vil", "ir069"))]
        if events >= 3:
            extra.append(dict(rows[1], id=f"S{899999:06d}", pct_missing=0.25))  # only row of its id: dropped
            extra.append(dict(rows[2]))  # same id as rows[2], so rows[2]'s event is dropped too
        for name, items in sorted(per_file.items()):
            path = staging / "data" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w", track_order=False) as h5:
                h5.create_dataset("vil", data=np.stack([v for _, v in items]), track_times=False,
                                  chunks=(1, SIZE, SIZE, FRAMES), compression="gzip", compression_opts=4)
                h5.create_dataset("id", data=np.array([e.encode() for e, _ in items]), track_times=False)
        with open(staging / "CATALOG.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CATALOG_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for row in sorted(rows + extra, key=lambda r: (r["id"], r["img_type"], str(r["pct_missing"]))):
                writer.writerow(row)
        # flush the staged tree (files and folders) before renaming it into place, then the rename itself
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                fsync_file(path)
            else:
                fsync_dir(path)
        fsync_dir(staging)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def write_radar_file(path, events: int = 3, seed: int = 0) -> Path:
    """A small forecast-input file: `vil` uint8 (events, 128, 128, 25) in SEVIR layout plus `time_utc` (frame 0 of
    each event, ISO UTC), written atomically."""
    path = Path(path)
    vil = np.stack([storm_event(np.random.default_rng([seed, 10_000 + i])) for i in range(events)])
    first = dt.datetime(2019, 7, 1, 18, 0)
    times = [(first + dt.timedelta(hours=6 * i)).strftime("%Y-%m-%dT%H:%M:%S") for i in range(events)]
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("vil", data=vil, track_times=False, compression="gzip", compression_opts=4)
        # UTC of each event's frame 0, so forecasts from this file carry real timestamps
        h5.create_dataset("time_utc", data=np.array([t.encode() for t in times]), track_times=False)
    return path


def summarize(dest: Path) -> List[str]:
    """HDF5 files of a written dataset (for the CLI summary)."""
    return sorted(str(p.relative_to(dest)) for p in (Path(dest) / "data").rglob("*.h5"))
