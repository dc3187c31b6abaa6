"""CF time coordinates ("<unit> since <date>" with a calendar) → naive UTC datetimes, checked, with one-line errors.

Radar frames carry real times, so only the calendars of real dates are accepted (standard / gregorian /
proleptic_gregorian: the same dates after 1582): a model calendar such as 360_day or noleap has days no clock
shows (30 February) and is refused, as are missing or non-finite values, reference years that do not exist
(year 0) and dates outside 1900–2200. The decoding is cftime's (what netCDF4 and xarray use); its errors are
reported as ours, not as a library's advice.
"""
from __future__ import annotations

import datetime as dt
from typing import List

import numpy as np

from prediff.errors import InputError

#: calendars whose dates are real dates (CF 4.4.1; "none" and the model calendars are not)
REAL_CALENDARS = ("standard", "gregorian", "proleptic_gregorian")
#: frame times outside these years are not radar observations (and would overflow some decoders)
FIRST_YEAR, LAST_YEAR = 1900, 2200


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def check_calendar(calendar, what: str) -> str:
    """The calendar's canonical name, or one line refusing a calendar whose dates are not real dates."""
    name = "standard" if calendar is None else str(calendar).strip().lower()
    if name not in REAL_CALENDARS:
        raise InputError(f"{what} uses the calendar {calendar!r}, whose dates are not real dates (a 360-day or "
                         f"no-leap calendar has days no clock shows); radar times need one of "
                         f"{', '.join(REAL_CALENDARS)}")
    return name


def _check_years(times: List[dt.datetime], what: str) -> List[dt.datetime]:
    for t in times:
        if not FIRST_YEAR <= t.year <= LAST_YEAR:
            raise InputError(f"{what} holds the date {t:%Y-%m-%d %H:%M}, outside {FIRST_YEAR}–{LAST_YEAR}; check its "
                             "units")
    return times


def decode_cf_times(values, units, calendar, what: str) -> List[dt.datetime]:
    """Numbers `values` (any shape) in CF time `units` → naive UTC datetimes (flattened).

    Parameters
    ----------
    values : array_like
        Offsets from the reference date, in `units` (masked values count as missing).
    units : str
        "<unit> since <date>[ <time>][ <zone>]", e.g. "minutes since 2019-07-01 18:00:00".
    calendar : str or None
        The CF calendar (None: standard).
    what : str
        What the values are, for messages ("'time' in radar.nc").
    """
    if not isinstance(units, str) or " since " not in f" {units.strip()} ":
        raise InputError(f"{what} has no CF time units (like 'minutes since 2019-06-01 12:00:00'); got {units!r}")
    name = check_calendar(calendar, what)
    try:
        numbers = np.ma.filled(np.ma.asarray(values, dtype=np.float64), np.nan).ravel()
    except (TypeError, ValueError):
        raise InputError(f"{what} holds values that are not numbers") from None
    if not np.all(np.isfinite(numbers)):
        raise InputError(f"{what} holds missing or non-finite times")
    import cftime

    try:
        decoded = cftime.num2date(numbers, units.strip(), name, only_use_cftime_datetimes=False,
                                  only_use_python_datetimes=True)
    except Exception as exc:  # noqa: BLE001 - any decoder failure on an outside file is a bad time axis
        raise InputError(f"cannot decode {what} with units {units!r} and calendar {name!r}: "
                         f"{_one_line(exc)}") from None
    return _check_years([d.replace(tzinfo=None) if d.tzinfo is None else
                         (d - d.utcoffset()).replace(tzinfo=None) for d in np.atleast_1d(decoded)], what)


def datetimes_of(values, what: str) -> List[dt.datetime]:
    """Already-decoded times (numpy datetime64, Python datetimes or cftime dates of a real calendar) → naive UTC
    datetimes; NaT, other calendars and impossible dates are refused in one line."""
    out = []
    for v in np.asarray(values).ravel():
        if isinstance(v, np.datetime64):
            if np.isnat(v):
                raise InputError(f"{what} holds missing times (NaT)")
            out.append(v.astype("datetime64[us]").astype(dt.datetime))
        elif isinstance(v, dt.datetime):
            out.append(v.replace(tzinfo=None) if v.tzinfo is None else
                       (v - v.utcoffset()).replace(tzinfo=None))
        elif hasattr(v, "calendar") and hasattr(v, "year"):  # a cftime date
            check_calendar(v.calendar or "standard", what)
            try:
                out.append(dt.datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond))
            except ValueError as exc:
                raise InputError(f"{what} holds an impossible date ({_one_line(exc)})") from None
        else:
            raise InputError(f"{what} holds {type(v).__name__} values; expected times")
    return _check_years(out, what)
