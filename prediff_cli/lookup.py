"""Build an object by name from a table of constructors (baselines, metrics).

Lookups are forgiving about spelling ("Optical-Flow" finds "optical_flow") and strict about the rest: an
unknown name, or options the constructor does not take, raise a one-line ConfigError that lists the valid
names, so a typo in a config or on the command line says what would have worked.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from prediff.errors import ConfigError


def normalize_name(name: Any) -> str:
    """The table key `name` stands for: trimmed, lower case, dashes as underscores."""
    return str(name).strip().lower().replace("-", "_")


def build_by_name(table: Mapping[str, Callable[..., Any]], name: Any, kind: str, kinds: str, **options) -> Any:
    """`table[name](**options)`; ConfigError "unknown <kind> ...; valid <kinds>: ..." for an unknown name,
    ConfigError "bad options for <kind> ..." when the constructor rejects the options."""
    key = normalize_name(name)
    if key not in table:
        raise ConfigError(f"unknown {kind} {name!r}; valid {kinds}: {', '.join(table)}")
    try:
        return table[key](**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for {kind} {name!r}: {exc}") from None
