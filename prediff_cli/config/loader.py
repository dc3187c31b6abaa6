"""The one config loader every subcommand uses.

`load_config("tiny", ["sample.steps=20"])` reads a shipped preset (or a YAML file path), applies
`section.key=value` overrides and returns a frozen, type-checked `Config`. Anything unknown or of the
wrong type raises `ConfigError` with a one-line message naming the key and what is allowed.

A user YAML may start from a preset with `base: <preset>`; every other top-level key is a section. A MindEarth
PreDiff YAML is recognised by its structure and translated (`config.mindearth`).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence, Union

import yaml

from prediff.errors import ConfigError
from prediff.io.atomic import atomic_write_text

from .mindearth import is_mindearth_config, translate_mindearth_config
from .schema import BLOCKWISE_RECOMPUTE, LIMITS, Config, DataConfig, SampleConfig, TrainConfig, VAEConfig, to_plain

PRESET_DIR = Path(__file__).with_name("presets")


def preset_names() -> list:
    """Names of the presets shipped inside the package."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(source: str = "tiny", overrides: Sequence[str] = (),
                values: Optional[Mapping[str, Any]] = None) -> Config:
    """Resolve a preset name or YAML path, then `section.key=value` text overrides, then `values`
    (dotted key → already-typed Python value, e.g. from dedicated CLI options) into a `Config`."""
    raw, name = _read_source(source, seen=())
    raw = dict(raw)
    raw.setdefault("preset", name)
    return _overridden(raw, overrides, values)


def override_config(config: Config, overrides: Sequence[str] = (),
                    values: Optional[Mapping[str, Any]] = None) -> Config:
    """`config` with `section.key=value` text overrides and dotted-key `values` applied, re-validated."""
    raw = to_plain(config)
    return _overridden(raw, overrides, values)


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Build a `Config` from a (possibly partial) nested dict, e.g. one embedded in a checkpoint."""
    return _build(Config, raw, prefix="")


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(to_plain(config), sort_keys=False, default_flow_style=None)


def write_resolved_config(config: Config, directory: Path, name: str = "config.yaml") -> Path:
    """Write the resolved config next to a command's outputs (temporary name, then rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(directory / name, config_to_yaml(config))


# ----------------------------------------------------------------------------------------------------------------


def _overridden(raw: dict, overrides: Sequence[str], values: Optional[Mapping[str, Any]]) -> Config:
    """Apply the `section.key=value` text overrides, then the dotted-key `values`, to `raw` (in place) and
    validate the result into a `Config`."""
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key, value)
    for key, value in (values or {}).items():
        _set_dotted(raw, key, value)
    return config_from_dict(raw)


def _read_source(source: str, seen: tuple) -> tuple:
    if source in seen:
        raise ConfigError(f"config 'base' chain loops: {' -> '.join(seen + (source,))}")
    path = Path(source)
    if source in preset_names():
        path, name = PRESET_DIR / f"{source}.yaml", source
    elif path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {source} (or use a preset: {', '.join(preset_names())})")
        name = path.stem
    else:
        raise ConfigError(f"unknown config preset {source!r}; valid presets: {', '.join(preset_names())} "
                          "(or a path to a .yaml file)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config file {path} is not valid YAML: {first}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(raw).__name__}")
    if is_mindearth_config(raw):
        raw = translate_mindearth_config(raw, str(path), check=_built_on_base)
    base = raw.pop("base", None)
    if base is None:
        return raw, name
    parent, parent_name = _read_source(str(base), seen + (source,))
    merged = _deep_merge(parent, raw)
    merged.setdefault("preset", parent_name)
    return merged, name


def _built_on_base(doc: dict) -> Config:
    """The config that `doc` (a document naming its `base`) resolves to; raises ConfigError for a bad value."""
    base, _ = _read_source(str(doc["base"]), seen=())
    return config_from_dict(_deep_merge(base, {k: v for k, v in doc.items() if k != "base"}))


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _parse_override(item: str) -> tuple:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has no key before '='")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key, value


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"config key {'.'.join(parts[:parts.index(part) + 1])!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _build(cls, raw: Any, prefix: str):
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config section {where!r} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        raise ConfigError(f"unknown config key {prefix + str(unknown[0])!r}; valid keys in {where!r}: "
                          f"{', '.join(fields)}")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _coerce(value, hints[name], prefix + name)
    obj = cls(**kwargs)
    _validate(obj, prefix)
    return obj


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin is Union:
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        args = typing.get_args(tp)
        inner = _describe(args[0]) if args else "value"
        return f"a list of {inner}" if (len(args) == 2 and args[1] is Ellipsis) or not args \
            else f"a list of {len(args)} values"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, key: str):
    def bad(extra: str = "") -> ConfigError:
        return ConfigError(f"config key {key!r}: {value!r} is not valid; expected {_describe(tp)}{extra}")

    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, key + ".")
    origin = typing.get_origin(tp)
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad()
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            if value == choice or (isinstance(choice, str) and not isinstance(value, bool) and str(value) == choice):
                return choice
        raise bad()
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise bad()
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise bad()
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp in (int, float):  # numbers and numeric text (PyYAML reads 1e-4, with no dot, as a string)
        if isinstance(value, bool) or (tp is int and isinstance(value, float) and not value.is_integer()):
            raise bad()
        if isinstance(value, (int, float, str)):
            try:
                return tp(value)
            except ValueError:
                pass
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    raise ConfigError(f"config key {key!r} has an unsupported type {tp!r}")  # pragma: no cover


def _check_ranges(obj, prefix: str) -> None:
    """Every numeric field (each element of a tuple field) finite and inside its `schema.LIMITS` range."""
    for name, allowed in LIMITS.get(type(obj), {}).items():
        value = getattr(obj, name)
        if value is None:
            continue
        for i, item in enumerate(value if isinstance(value, tuple) else (value,)):
            key = prefix + name + (f"[{i}]" if isinstance(value, tuple) else "")
            kind = "an integer" if isinstance(item, int) else "a number"
            if not (math.isfinite(item) and allowed.contains(item)):
                raise ConfigError(f"config key {key!r}: {item!r} is not valid; expected {kind} "
                                  f"{allowed.describe()}")


def _validate(obj, prefix: str) -> None:
    """Range checks of every numeric field, then cross-field checks that a type alone cannot express."""
    def fail(key: str, msg: str):
        raise ConfigError(f"config key {prefix + key!r}: {msg}")

    _check_ranges(obj, prefix)
    if isinstance(obj, VAEConfig):
        bad = [c for c in obj.block_out_channels if c % obj.norm_num_groups]
        if bad:
            fail("norm_num_groups", f"{obj.norm_num_groups} does not divide the block channels "
                                    f"{list(obj.block_out_channels)}; GroupNorm needs whole groups")

    if isinstance(obj, TrainConfig):
        if obj.total_batch_size % obj.micro_batch_size:
            fail("total_batch_size", f"{obj.total_batch_size} is not a multiple of micro_batch_size "
                                     f"{obj.micro_batch_size}")
        if obj.recompute == BLOCKWISE_RECOMPUTE and prefix != "train_diffusion.":
            fail("recompute", f"{BLOCKWISE_RECOMPUTE} (per-block gradient graphs) is available in train_diffusion "
                              "only; valid here: 0, 1, 2")
        if obj.keep_linear_outputs and obj.recompute != BLOCKWISE_RECOMPUTE:
            fail("keep_linear_outputs", f"true needs recompute {BLOCKWISE_RECOMPUTE} (per-block gradient graphs, "
                                        f"train_diffusion only); recompute here is {obj.recompute}")
    if isinstance(obj, DataConfig):
        if obj.seq_len > obj.raw_seq_len:
            fail("raw_seq_len", f"{obj.raw_seq_len} frames cannot hold in_len + out_len = {obj.seq_len}")
        try:
            dt.date.fromisoformat(obj.train_test_split_date)
        except ValueError:
            fail("train_test_split_date", f"{obj.train_test_split_date!r} is not a date like 2019-06-01")
    if isinstance(obj, SampleConfig):
        given = [k for k in ("align_target", "align_factor", "align_oracle") if getattr(obj, k) is not None]
        if len(given) > 1:
            fail(given[1], f"give at most one of align_target, align_factor, align_oracle (got {', '.join(given)})")
        if given and obj.align == "none":
            fail(given[0], "is set but align is 'none'; set align to avg_x (or drop the value)")
