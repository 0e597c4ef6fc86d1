"""Config ↔ dict / TOML / CLI flags / run hash, generated from the dataclass fields of :mod:`snnlth.config`."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from snnlth.config import RUNTIME_LEGACY_SECTIONS, flag_name
from snnlth.errors import ConfigError
from snnlth.registry import unknown_name_message

RUNTIME = "runtime"  # the section of the fields that never change results (not part of a run's identity)
_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}
_TUPLES = {f"tuple[{k}, ...]": v for k, v in _SCALARS.items()}


def _sections(cfg_cls: type) -> dict[str, type]:
    """Section name → dataclass type of a run config class (e.g. ``{"data": DataConfig, ...}``)."""
    return {f.name: f.default_factory().__class__ for f in dataclasses.fields(cfg_cls)}  # type: ignore[misc]


def _field_type(f: dataclasses.Field) -> tuple[type, bool]:
    """(scalar type, optional) of a field annotated as ``int``, ``float | None`` and so on (tuples: element type)."""
    if str(f.type) in _TUPLES:
        return _TUPLES[str(f.type)], False
    parts = [p.strip() for p in str(f.type).split("|")]
    optional = "None" in parts
    names = [p for p in parts if p != "None"]
    if len(names) != 1 or names[0] not in _SCALARS:
        raise TypeError(f"unsupported config field type {f.type!r} for {f.name}")
    return _SCALARS[names[0]], optional


def _is_tuple(f: dataclasses.Field) -> bool:
    return str(f.type) in _TUPLES


def _coerce(f: dataclasses.Field, value: Any, where: str) -> Any:
    if _is_tuple(f):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list (got {value!r})")
        return tuple(_coerce_scalar(f, v, where) for v in value)
    return _coerce_scalar(f, value, where)


def _coerce_scalar(f: dataclasses.Field, value: Any, where: str) -> Any:
    typ, optional = _field_type(f)
    if value is None or (optional and isinstance(value, str) and value.lower() == "none"):
        if optional:
            return None
        raise ConfigError(f"{where} cannot be empty; give a {typ.__name__}")
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif typ is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif typ is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and typ in (int, float):
        try:
            return typ(value)
        except ValueError:
            pass
    raise ConfigError(f"{where} must be a {typ.__name__}{' or none' if optional else ''} (got {value!r})")


def config_to_dict(cfg: Any) -> dict[str, dict[str, Any]]:
    """Nested plain dict of a run config, section by section."""
    return dataclasses.asdict(cfg)


def config_from_dict(cfg_cls: type, raw: dict[str, Any], base: Any | None = None) -> Any:
    """Build ``cfg_cls`` from a nested dict (as read from TOML/JSON); unknown keys are errors with a suggestion."""
    base = base if base is not None else cfg_cls()
    sections = _sections(cfg_cls)
    raw = _runtime_moved(raw) if RUNTIME in sections else raw
    out = {}
    for key in raw:
        if key not in sections:
            raise ConfigError(unknown_name_message("config section", key, list(sections)))
    for name, sec_cls in sections.items():
        values = raw.get(name, {})
        if not isinstance(values, dict):
            raise ConfigError(f"config section [{name}] must be a table of keys")
        fields = {f.name: f for f in dataclasses.fields(sec_cls)}
        for key in values:
            if key not in fields:
                raise ConfigError(unknown_name_message(f"key in [{name}]", key, list(fields)))
        kwargs = {k: _coerce(fields[k], v, f"[{name}] {k}") for k, v in values.items()}
        out[name] = dataclasses.replace(getattr(base, name), **kwargs)
    return cfg_cls(**out)


def _runtime_moved(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with the ``[runtime]`` fields found where they lived before 0.4 (``[train] device``, ``[data]
    data_dir``, ...) moved to ``[runtime]``, so older config files and saved runs still read; the same key in both
    places with two values is an error."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for key, section in RUNTIME_LEGACY_SECTIONS.items():
        old = out.get(section)
        if not isinstance(old, dict) or key not in old:
            continue
        runtime = out.setdefault(RUNTIME, {})
        if not isinstance(runtime, dict):
            break  # reported as a malformed [runtime] table below
        value = old.pop(key)
        if key in runtime and runtime[key] != value:
            raise ConfigError(f"{key} is given in [{section}] ({value!r}) and in [{RUNTIME}] ({runtime[key]!r}); "
                              f"keep it in [{RUNTIME}] only")
        runtime.setdefault(key, value)
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a nested dict, with a clear error for a missing or malformed file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found; check the --config path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc}); fix the file") from None


def add_config_flags(parser: argparse.ArgumentParser, cfg_cls: type) -> None:
    """Add one flag per config field; defaults are suppressed so only given flags override."""
    for sec_name, sec_cls in _sections(cfg_cls).items():
        group = parser.add_argument_group(f"[{sec_name}] options")
        for f in dataclasses.fields(sec_cls):
            typ, optional = _field_type(f)
            flag = _flag_of(f)
            default = f.default
            help_text = f"{f.metadata.get('help', '')} (default: {default})"
            kw: dict[str, Any] = {"dest": f"{sec_name}.{f.name}", "default": argparse.SUPPRESS, "help": help_text}
            if typ is bool:
                group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            elif _is_tuple(f):
                group.add_argument(flag, metavar=f.name.upper(), nargs="+", **kw)
            else:
                group.add_argument(flag, metavar=f.name.upper(), **kw)


def _flag_of(f: dataclasses.Field) -> str:
    return flag_name(f.name)


def overrides_from_namespace(ns: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Nested dict of the config flags the user actually gave."""
    out: dict[str, dict[str, Any]] = {}
    for dest, value in vars(ns).items():
        if "." in dest:
            sec, key = dest.split(".", 1)
            out.setdefault(sec, {})[key] = value
    return out


def fill_legacy(cfg_cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    """A saved config (``config.json``) with the keys it lacks set to their identity default: the value a run
    written before the field existed used (``bn_time`` was pooled). Resuming such a run then keeps its identity.
    A reinit run written before 0.4 took its levels from ``retrain_at``."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    search = out.get("search")
    if isinstance(search, dict) and search.get("method") == "reinit" and "reinit_levels" not in search:
        search["reinit_levels"] = search.get("retrain_at", ["last"])
        search.pop("retrain_at", None)
    for name, sec_cls in _sections(cfg_cls).items():
        section = out.setdefault(name, {})
        for f in dataclasses.fields(sec_cls):
            legacy = f.metadata.get("identity_default", f.default)
            if f.name not in section and legacy != f.default:
                section[f.name] = list(legacy) if isinstance(legacy, tuple) else legacy
    return out


def legacy_semantic(saved: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The identity (``semantic``) of a saved ``config.json`` in today's terms, so runs written before 0.4 resume:
    a reinit run named its levels ``search.retrain_at`` (now ``reinit_levels``); a run begun with ``--sync-bn`` had
    it outside its identity (now in)."""
    sem = {k: dict(v) for k, v in saved.get("semantic", {}).items() if isinstance(v, dict)}
    search = sem.get("search", {})
    method = search.get("method", (saved.get("search") or {}).get("method"))
    if method == "reinit" and "retrain_at" in search and "reinit_levels" not in search:
        search["reinit_levels"] = search.pop("retrain_at")
    if (saved.get("train") or {}).get("sync_bn") and "sync_bn" not in sem.get("train", {}):
        sem.setdefault("train", {})["sync_bn"] = True
    return sem


def resolve_config(cfg_cls: type, config_file: str | None, overrides: dict[str, dict[str, Any]]) -> Any:
    """Defaults ← TOML file ← flags, validated. Flag values are strings and coerced by field type."""
    cfg = cfg_cls()
    if config_file:
        cfg = config_from_dict(cfg_cls, load_toml(config_file), cfg)
    return config_from_dict(cfg_cls, overrides, cfg)


def resolve_search_config(config_file: str | None, overrides: dict[str, dict[str, Any]]) -> Any:
    """Defaults ← the preset (``[search] preset`` of the file, or ``--preset``) ← TOML file ← flags, validated."""
    from snnlth.config import SearchRunConfig
    from snnlth.presets import preset

    raw = load_toml(config_file) if config_file else {}
    name = overrides.get("search", {}).get("preset") or (raw.get("search") or {}).get("preset")
    cfg = SearchRunConfig()
    for layer in ([preset(name)] if name else []) + [raw, overrides]:
        cfg = config_from_dict(SearchRunConfig, layer, cfg)
    return cfg


def semantic_dict(cfg: Any, ignored: Iterable[str] = (), facts: dict[str, dict[str, Any]] | None = None
                  ) -> dict[str, dict[str, Any]]:
    """The identity of a run: the recipe fields (every section but ``[runtime]``) that differ from their identity
    default (normally the default). ``ignored``: ``section.field`` names left out (fields the run's method does not
    read). ``facts``: entries that are no config field but change results (a changed data pipeline), merged in by
    section."""
    skip = set(ignored)
    out: dict[str, dict[str, Any]] = {}
    for sec in dataclasses.fields(cfg):
        if sec.name == RUNTIME:
            continue
        section = getattr(cfg, sec.name)
        for f in dataclasses.fields(section):
            if f"{sec.name}.{f.name}" in skip:
                continue
            value = getattr(section, f.name)
            if _json(value) != _json(f.metadata.get("identity_default", f.default)):
                out.setdefault(sec.name, {})[f.name] = value
    for sec_name, values in (facts or {}).items():
        out.setdefault(sec_name, {}).update(values)
    return out


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples -> lists, so a saved value compares equal to a fresh one


def config_hash(cfg: Any, kind: str, ignored: Iterable[str] = (), facts: dict[str, dict[str, Any]] | None = None
                ) -> str:
    """8 hex digits naming a run by its content; fields at their default are left out, so adding a field with a
    default keeps every old name."""
    ident = semantic_dict(cfg, ignored, facts)
    ident.get("train", {}).pop("seed", None)  # the seed names the sub-directory seed_<s>, not the run
    ident = {k: v for k, v in ident.items() if v}
    canon = json.dumps({"kind": kind, **ident}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:8]


def config_to_toml(cfg: Any) -> str:
    """The resolved config as a TOML file ``--config`` reads back (unset optional fields are left out)."""
    lines: list[str] = []
    for section, values in config_to_dict(cfg).items():
        lines += ["", f"[{section}]"] if lines else [f"[{section}]"]
        for key, value in values.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escaping is valid TOML
