"""Series: the runs of one experiment, which differ only in their seed. A series' identity is the run's semantic
config (``config.json["semantic"]``, flattened to ``section.key``) without the seed-like entries, so IMP at
``--rewind-epoch 0`` and at ``--rewind-epoch 2`` are two series, each averaged over its own seeds, never together."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnlth.config import MODIFIER_FIELDS
from snnlth.config_io import legacy_semantic
from snnlth.errors import SnnlthError
from snnlth.report.collect import ReportError, RunRecord
from snnlth.rundir.layout import RunLayout

ORDER = ["IMP", "IMP+ET", "IMP+ES", "IMP+ET+ES", "IMP+SS", "IMP+ET+SS", "IMP+ES+SS", "IMP+ET+ES+SS", "EB", "EB+ET",
         "GMP", "GMP+ET", "LRR", "LRR+ET", "random", "reinit"]
SEED_LIKE = ("train.seed", "model.init")  # model.init: the initial-weights digest of a user's network is its seed
MODIFIER_KEYS = frozenset(f"search.{f}" for f in MODIFIER_FIELDS)
SHORT = {"rewind_epoch": "rewind", "prune_rate": "rate", "scope": "scope", "et_threshold": "λ", "epochs": "epochs",
         "lr": "lr", "timesteps": "T", "rounds": "rounds", "early_time": "ET", "t_pre": "T_pre", "t_post": "T_post",
         "eb_threshold": "τ", "eb_window": "q", "round_stop_threshold": "stop τ", "round_stop_window": "stop q",
         "target_sparsity": "targets", "from_run": "from", "batch_size": "batch", "weight_decay": "wd",
         "train_subset": "train", "test_subset": "test", "preset": "preset", "model": "model", "method": "method",
         "search_epochs": "search epochs", "search_schedule": "search schedule", "gmp_end": "t1", "gmp_every": "every",
         "lrr_jump": "jump", "lrr_epochs": "lrr epochs"}
_MAX_SOURCE_DEPTH = 8  # a --from chain longer than this is named by its path (no real chain is this long)


@dataclass
class Series:
    """Runs of one experiment. ``label``: what tables and plots show (``IMP (rewind 2)``); ``method_label`` and
    ``base_label``: what the runs recorded (``IMP+ET``, ``IMP``); ``identity``: ``section.key`` -> value."""

    label: str
    method_label: str
    base_label: str
    identity: dict[str, Any]
    runs: list[RunRecord]


def _flat(config: dict) -> dict[str, Any]:
    """``section.key`` -> value of the run's identity (in today's terms: a run written before 0.4 reads as it would
    be named now)."""
    return {f"{s}.{k}": v for s, sec in legacy_semantic(config).items() for k, v in sec.items()}


def identity_of(config: dict, depth: int = 0) -> dict[str, Any]:
    """The series identity of a run's ``config.json``: its flattened semantic dict without the seed-like entries;
    ``search.from_run`` (the source run, one per seed) becomes the source's own identity, or its path without a
    trailing ``seed_<n>`` when the source cannot be read."""
    ident = {k: v for k, v in _flat(config).items() if k not in SEED_LIKE}
    if ident.get("search.from_run") is not None:
        ident["search.from_run"] = source_identity(str(ident["search.from_run"]), depth)
    return ident


def source_identity(path: str, depth: int = 0) -> dict[str, Any] | str:
    """The identity of the run at ``path`` (a ``--from`` source), else ``path`` less a trailing ``seed_<n>``."""
    layout = RunLayout(Path(path))
    if depth < _MAX_SOURCE_DEPTH and layout.config.is_file():
        try:
            return identity_of(layout.read_config(), depth + 1)
        except (SnnlthError, OSError, AttributeError):
            pass  # unreadable or not a dict: fall back to the path
    p = Path(path)
    return p.parent.as_posix() if re.fullmatch(r"seed_\d+", p.name) else p.as_posix()


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def seed_of(run: RunRecord) -> tuple:
    """What tells two runs of one series apart: the seed and, for a user's network, its initial weights. A
    ``--quirks official`` run draws its seed when it starts (``summary["seed"]``), so its own path stands for an
    unfinished one."""
    init = run.config.get("semantic", {}).get("model", {}).get("init")
    if run.config.get("train", {}).get("quirks") == "official":
        return run.seed, _canon(init), (run.summary or {}).get("seed", run.path.as_posix())
    return run.seed, _canon(init)


def _check_seeds(runs: list[RunRecord], label: str) -> None:
    seen: dict[tuple, RunRecord] = {}
    for r in runs:
        other = seen.setdefault(seed_of(r), r)
        if other is not r:
            raise ReportError(f"{other.path} and {r.path} are the same {label} run (seed {r.seed}): averaging them "
                              "would count one seed twice; pass one of them")


def value_text(value: Any) -> str:
    """A config value in a label: lists joined with ``/``, dicts as a 6-hex-digit digest, floats short."""
    if isinstance(value, dict):
        return hashlib.sha256(_canon(value).encode()).hexdigest()[:6]
    if isinstance(value, (list, tuple)):
        return "/".join(map(value_text, value))
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


def _value(s: Series, key: str) -> Any:
    """``key`` of a series: from its identity, else (at its default) from the run's resolved config section."""
    if key in s.identity:
        return s.identity[key]
    section, name = key.split(".", 1)
    return s.runs[0].config.get(section, {}).get(name)


def _sort_value(value: Any) -> tuple:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if is_number else (1, 0, value_text(value))


def short_name(key: str) -> str:
    """The name of a ``section.key`` in a label: a short one for common keys (``rewind``, ``λ``), else the key."""
    name = key.split(".", 1)[1]
    return SHORT.get(name, name.replace("_", "-"))


def _suffixes(group: list[Series]) -> list[tuple[str, tuple]]:
    """For series sharing one label: the text naming what differs among them, and a key to sort them by."""
    keys = sorted({k for s in group for k in s.identity})
    differ = [k for k in keys if len({_canon(_value(s, k)) for s in group}) > 1]
    out = []
    for s in group:
        values = [_value(s, k) for k in differ]
        text = ", ".join(f"{short_name(k)} {value_text(v)}" for k, v in zip(differ, values))
        out.append((text or f"id {value_text(s.identity)}", tuple(map(_sort_value, values))))
    return out


def _rank(label: str) -> tuple[int, str]:
    return (ORDER.index(label), "") if label in ORDER else (len(ORDER), label)


def series(runs: list[RunRecord]) -> list[Series]:
    """The runs grouped into series, sorted by label (:data:`ORDER` first), then by what tells a label's series
    apart; a :class:`ReportError` if one series holds two runs of the same seed."""
    groups: dict[tuple[str, str], Series] = {}
    for r in runs:
        ident = identity_of(r.config)
        s = groups.setdefault((r.label, _canon(ident)), Series(r.label, r.label, r.base_label, ident, []))
        s.runs.append(r)
    for s in groups.values():
        _check_seeds(s.runs, s.method_label)
    return _named(list(groups.values()))


def _named(all_series: list[Series]) -> list[Series]:
    """``all_series`` sorted by label (:data:`ORDER` first); series sharing a label get what differs among them in
    their label (``IMP (rewind 2)``) and are sorted by it."""
    by_label: dict[str, list[Series]] = {}
    for s in all_series:
        by_label.setdefault(s.method_label, []).append(s)
    ordered = []
    for label in sorted(by_label, key=_rank):
        group = by_label[label]
        if len(group) > 1:
            named = _suffixes(group)
            for s, (suffix, _) in zip(group, named):
                s.label = f"{label} ({suffix})"
            group = [s for s, _ in sorted(zip(group, named), key=lambda x: x[1][1])]
            _make_unique(group)
        ordered += group
    return ordered


def _make_unique(group: list[Series]) -> None:
    """Two values may print alike (``0.1`` and ``0.10000001``): such series also get their identity's digest."""
    counts: dict[str, int] = {}
    for s in group:
        counts[s.label] = counts.get(s.label, 0) + 1
    for s in group:
        if counts[s.label] > 1:
            s.label = f"{s.label[:-1]}, id {value_text(s.identity)})"


def value_of(s: Series, key: str, default: Any = None) -> Any:
    """``key`` (``section.key``) of a series' runs, ``default`` where neither identity nor config holds it."""
    value = _value(s, key)
    return default if value is None else value


def ablation_groups(runs: list[RunRecord], key: str) -> list[tuple[str, list[Series]]]:
    """Series that differ in ``key`` alone (``search.rewind_epoch``, ``search.scope``): the groups of an ablation
    figure, each named like a series by what tells it from the other groups, its series sorted by their value of
    ``key``; only groups where ``key`` takes two values or more."""
    buckets: dict[tuple[str, str], list[Series]] = {}
    for s in series(runs):
        rest = {k: v for k, v in s.identity.items() if k != key}
        buckets.setdefault((s.method_label, _canon(rest)), []).append(s)
    groups = [g for g in buckets.values() if len({_canon(_value(s, key)) for s in g}) > 1]
    stand_ins = [Series(g[0].method_label, g[0].method_label, g[0].base_label,
                        {k: v for k, v in g[0].identity.items() if k != key}, g[0].runs) for g in groups]
    members = {id(x): g for x, g in zip(stand_ins, groups)}
    return [(x.label, sorted(members[id(x)], key=lambda s: _sort_value(_value(s, key)))) for x in _named(stand_ins)]


def run_labels(runs: list[RunRecord]) -> dict[Path, str]:
    """Run directory -> the label of its series."""
    return {r.path: s.label for s in series(runs) for r in s.runs}


def without_modifiers(identity: dict[str, Any]) -> dict[str, Any]:
    """An identity without the Early-Time, round-stop and search-schedule fields: what a variant and its plain
    method share."""
    return {k: v for k, v in identity.items() if k not in MODIFIER_KEYS}


def comparisons(runs: list[RunRecord]) -> dict[str, str]:
    """Series label -> the label of the series it is compared with: the one of its recorded base label whose identity
    equals its own once the modifier fields are left out (``IMP+ET (rewind 2)`` -> ``IMP (rewind 2)``)."""
    ss = series(runs)
    out = {}
    for x in ss:
        if x.base_label == x.method_label:
            continue
        plain = without_modifiers(x.identity)
        match = next((s for s in ss if s.method_label == x.base_label and without_modifiers(s.identity) == plain),
                     None)
        if match is not None:
            out[x.label] = match.label
    return out
