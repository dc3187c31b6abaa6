"""Which frames of a time series the model sees: 10-minute steps, thinned from 5- or 2.5-minute series.

The model's frames are 10 minutes apart. A series whose usual step (the most common one between consecutive
frames) is 5 or 2.5 minutes is thinned to every 2nd or 4th frame, counted back from the newest frame, so the
newest observation is always among those used; `--start` then counts frames of the thinned series. The frames
used must be exactly 10 minutes apart: a gap, or any other step, is refused in one line naming it.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import List, Optional, Sequence

from prediff.errors import InputError

FRAME_MINUTES = 10
#: steps (minutes) that are thinned to 10 minutes, with the stride that does it
THINNED_STEPS = {5.0: 2, 2.5: 4}
_ORDINALS = {2: "2nd", 4: "4th"}


def _minutes(a: dt.datetime, b: dt.datetime) -> float:
    return round((b - a).total_seconds() / 60.0, 6)


def usual_step(times: Sequence[dt.datetime]) -> Optional[float]:
    """The most common step between consecutive times, in minutes (None for fewer than two times)."""
    steps = [_minutes(a, b) for a, b in zip(times, times[1:])]
    return Counter(steps).most_common(1)[0][0] if steps else None


def thinning_note(what, step: float, stride: int, newest: dt.datetime) -> str:
    return (f"{what}: frames {step:g} minutes apart: using every {_ORDINALS[stride]} frame, ending at the newest "
            f"({newest:%Y-%m-%d %H:%M})")


def check_frame_times(what, times: List[dt.datetime], in_len: int) -> None:
    """The first `in_len` times must be 10 minutes apart: one line naming the wrong step or the gap otherwise."""
    steps = [_minutes(a, b) for a, b in zip(times[:in_len], times[1:in_len])]
    if all(abs(s - FRAME_MINUTES) < 1e-6 for s in steps):
        return
    if len(set(steps)) == 1:
        raise InputError(f"{what}: the frames are {steps[0]:g} minutes apart; the model needs {FRAME_MINUTES}-minute "
                         "frames (5- and 2.5-minute series are thinned to them)")
    k = next(i for i, s in enumerate(steps) if abs(s - FRAME_MINUTES) >= 1e-6)
    raise InputError(f"{what}: gap in the context: frame {times[k + 1]:%Y-%m-%d %H:%M} follows "
                     f"{times[k]:%Y-%m-%d %H:%M} ({steps[k]:g} min); the context needs {in_len} frames "
                     f"{FRAME_MINUTES} minutes apart")


@dataclass
class FramePlan:
    """Indices (into the file's frames) of the context and, when the file has them, the truth frames."""

    context: List[int]
    truth: Optional[List[int]]
    times: Optional[List[dt.datetime]]  # of the context frames
    note: Optional[str] = None  # one line to tell the user (thinning), or None


def plan_frames(what, total: int, times: Optional[List[dt.datetime]], start: int, in_len: int,
                out_len: int) -> FramePlan:
    """The frames of a series of `total` frames (with their `times`, when known) that make the context starting at
    frame `start` of the 10-minute series, and the `out_len` truth frames after it when present."""
    series, note = list(range(total)), None
    if times is not None and len(times) >= 2:
        step = usual_step(times)
        stride = THINNED_STEPS.get(step)
        if stride is not None:
            series = list(range(total - 1, -1, -stride))[::-1]
            note = thinning_note(what, step, stride, times[-1])
    if start + in_len > len(series):
        kind = "10-minute frames after thinning" if note else "frames"
        raise InputError(f"{what} has {len(series)} {kind}; --start {start} needs at least {start + in_len} "
                         f"({in_len} context frames)")
    context = series[start:start + in_len]
    chosen = None
    if times is not None:
        chosen = [times[i] for i in context]
        check_frame_times(what, chosen, in_len)
    after = series[start + in_len:start + in_len + out_len]
    truth = after if len(after) == out_len else None
    if truth is not None and times is not None:  # the truth only when it continues the 10-minute series
        seq = [times[i] for i in context[-1:] + truth]
        if any(_minutes(a, b) != FRAME_MINUTES for a, b in zip(seq, seq[1:])):
            truth = None
    return FramePlan(context=context, truth=truth, times=chosen, note=note)
