"""An append-only log of JSON lines (one JSON object per line), as services write them.

Each record is written with one `write` call of a whole line on a file opened for appending, then flushed and
fsync'ed: a reader (`tail -f`, `jq`) never sees half a line from a finished write, and a kill between records
loses nothing already written. A line left incomplete by a power loss is the only damage possible; readers
(`read_json_lines`) skip it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Mapping


def append_json_line(path, record: Mapping) -> None:
    """Append `record` (JSON-serialisable; other values are written as their `str`) as one line to `path`."""
    line = json.dumps(dict(record), sort_keys=True, default=str, allow_nan=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        data = line.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json_lines(path) -> Iterator[dict]:
    """The records of a JSON-lines file, skipping lines that are not a whole JSON object."""
    with open(Path(path), encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record
