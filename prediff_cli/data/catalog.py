"""SEVIR's CATALOG.csv: event selection exactly as the official loader does (`sevir_dataloader.py`).

1. keep rows with `time_utc` in (start, end] when given;
2. keep rows with `pct_missing == 0`;
3. keep `img_type == "vil"`; drop event ids that appear more than once for that type (SEVIR's duplicate-id
   events are removed entirely, not deduplicated);
4. one record per event, sorted by id (pandas' group-by order).
"""
from __future__ import annotations

import csv
import datetime as dt
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from prediff.errors import InputError

REQUIRED_COLUMNS = ("id", "file_name", "file_index", "img_type", "time_utc", "pct_missing")
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class EventRecord:
    """One SEVIR VIL event: where its frames are and when/where it happened."""

    id: str
    file_name: str  # relative to <root>/data/, e.g. vil/2018/SEVIR_VIL_STORMEVENTS_2018_0101_0630.h5
    file_index: int  # row of the event in the HDF5 `vil` dataset
    time_utc: dt.datetime  # the event's reference time (naive, UTC)
    corners: Optional[tuple] = None  # (llcrnrlat, llcrnrlon, urcrnrlat, urcrnrlon) in degrees
    proj: Optional[str] = None  # PROJ string of the image grid


def parse_time(text: str) -> dt.datetime:
    text = text.strip()
    for fmt in TIME_FORMATS:
        try:
            value = dt.datetime.strptime(text, fmt)
            return value.replace(tzinfo=None) if value.tzinfo is None else \
                value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        except ValueError:
            continue
    raise ValueError(f"unrecognised time {text!r}")


def _float(row: dict, key: str) -> Optional[float]:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return None


def read_catalog(path: Path, img_type: str = "vil", start: Optional[dt.datetime] = None,
                 end: Optional[dt.datetime] = None) -> List[EventRecord]:
    """Events of `img_type` in CATALOG.csv after the official filters, sorted by id."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"catalog not found: {path}")
    rows = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path} is not a SEVIR catalog: missing column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            if row["img_type"] != img_type:
                continue
            try:
                when = parse_time(row["time_utc"])
                pct = float(row["pct_missing"] or 0)
            except ValueError as exc:
                raise InputError(f"{path}, line {line}: {exc}") from None
            if (start is not None and when <= start) or (end is not None and when > end) or pct != 0:
                continue
            rows.append((row, when))
    counts = Counter(row["id"] for row, _ in rows)
    events = []
    for row, when in rows:
        if counts[row["id"]] > 1:
            continue
        corners = tuple(_float(row, k) for k in ("llcrnrlat", "llcrnrlon", "urcrnrlat", "urcrnrlon"))
        events.append(EventRecord(id=row["id"], file_name=row["file_name"], file_index=int(row["file_index"]),
                                  time_utc=when, corners=None if None in corners else corners,
                                  proj=row.get("proj") or None))
    events.sort(key=lambda e: e.id)
    return events


def find_event(path: Path, file_name: str, file_index: int) -> Optional[EventRecord]:
    """The catalog record of one HDF5 row (for timestamps and grid of a forecast input), or None."""
    for event in read_catalog(path):
        if event.file_index == file_index and Path(event.file_name).as_posix() == Path(file_name).as_posix():
            return event
    return None
