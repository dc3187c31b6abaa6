"""The words on the pictures: which model, when the forecast was issued, when each frame is valid."""
from __future__ import annotations

import datetime as dt
from typing import Optional


def issue_line(model_name: Optional[str], reference_time: Optional[dt.datetime]) -> str:
    """"model demo | issued 2019-07-01 19:00 UTC" (the parts that are known)."""
    parts = []
    if model_name:
        parts.append(f"model {model_name}")
    if reference_time is not None:
        parts.append(f"issued {reference_time:%Y-%m-%d %H:%M} UTC")
    return " | ".join(parts)


def valid_time(reference_time: Optional[dt.datetime], lead_minutes: float) -> Optional[dt.datetime]:
    return None if reference_time is None else reference_time + dt.timedelta(minutes=float(lead_minutes))


def frame_label(lead_minutes: int, reference_time: Optional[dt.datetime]) -> str:
    """"T+10 min 19:10" (the valid time's hour and minute when the issue time is known)."""
    valid = valid_time(reference_time, lead_minutes)
    return f"T{lead_minutes:+d} min" + ("" if valid is None else f" {valid:%H:%M}")
