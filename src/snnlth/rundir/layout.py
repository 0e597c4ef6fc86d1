"""Run directories: their names (derived from content), every file name inside them, and the check that a directory
holds this run. No torch here: reports read runs through this module too. Files with tensors go through
:class:`snnlth.rundir.store.RunStore`, which builds on this layout; no other module builds a path inside a run.

A search run directory::

    config.json  env.json  metrics.jsonl  summary.json     header, per-epoch rows, the result
    init.pt  rewind.pt                                     model states the search starts rounds from
    early_time.json                                        small JSON records computed once (the T_early choice)
    masks/<key>.pt                                         masks of a round / an Early-Bird ticket / a level
    phases/<name>.pt  phases/<name>.ckpt.pt                a finished training phase / its resumable checkpoint

A train run directory: the header, ``metrics.jsonl``, ``summary.json`` and ``checkpoint.pt``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnlth.config_io import config_hash, config_to_dict, legacy_semantic, semantic_dict
from snnlth.errors import RunDirError
from snnlth.rundir.atomic import atomic_write_json, atomic_write_text, read_json
from snnlth.rundir.lock import LOCK

CONFIG, ENV, METRICS, SUMMARY, CHECKPOINT = "config.json", "env.json", "metrics.jsonl", "summary.json", "checkpoint.pt"


def default_run_dir(kind: str, cfg: Any, root: str | Path = "runs", ignored: Iterable[str] = (),
                    facts: dict | None = None) -> Path:
    """``runs/<kind>-<model>-<dataset>-T<T>-<hash8>/seed_<s>``: rerunning the same command finds the same dir."""
    digest = config_hash(cfg, kind, ignored, facts)
    model = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.model.model)  # "user:Net" (a find_ticket run) -> "user-Net"
    name = f"{kind}-{model}-{cfg.data.dataset}-T{cfg.model.timesteps}-{digest}"
    return Path(root) / name / f"seed_{cfg.train.seed}"


@dataclass(frozen=True)
class Identity:
    """What a run directory must hold to be this run: the kind (``train`` / ``search``) and the semantic fields."""

    kind: str
    semantic: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, kind: str, cfg: Any, ignored: Iterable[str] = (), facts: dict | None = None) -> Identity:
        return cls(kind, json.loads(json.dumps(semantic_dict(cfg, ignored, facts))))  # tuples -> lists, as saved


@dataclass(frozen=True)
class RunLayout:
    """The files of one run directory, by name."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    config = property(lambda self: self.path / CONFIG)
    env = property(lambda self: self.path / ENV)
    metrics = property(lambda self: self.path / METRICS)
    summary = property(lambda self: self.path / SUMMARY)
    checkpoint = property(lambda self: self.path / CHECKPOINT)
    made_log = property(lambda self: self.path / "made.json")

    def state_file(self, name: str) -> Path:
        return self.path / f"{name}.pt"

    def record_file(self, name: str) -> Path:
        return self.path / f"{name}.json"

    def masks_file(self, key: str) -> Path:
        return self.path / "masks" / f"{key}.pt"

    def phase_file(self, name: str) -> Path:
        return self.path / "phases" / f"{name}.pt"

    def phase_checkpoint(self, name: str) -> Path:
        return self.path / "phases" / f"{name}.ckpt.pt"

    # ---- reading --------------------------------------------------------------------------------------------------
    def read_config(self) -> dict:
        return read_json(self.config)

    def read_summary(self) -> dict:
        try:
            return read_json(self.summary)
        except RunDirError:
            raise RunDirError(f"{self.summary} is damaged (not valid JSON); delete it and rerun the run's command: "
                              "the summary is rebuilt from the finished phases") from None

    def is_finished(self) -> bool:
        return self.config.exists() and self.summary.exists()

    # ---- opening --------------------------------------------------------------------------------------------------
    def stale_temp_files(self) -> list[Path]:
        """Temp files our atomic writes left behind when their process was killed: ``.<file>.<random>.tmp`` of a
        run file (``.config.json.k3j2x9.tmp``), in the run directory or its ``masks/`` and ``phases/``."""
        found = [p for p in self.path.glob(".*.tmp") if _temp_of(p.name, (CONFIG, ENV, METRICS, SUMMARY, CHECKPOINT),
                                                                  (".pt", ".json"))]
        for sub in ("masks", "phases"):
            found += [p for p in (self.path / sub).glob(".*.tmp") if _temp_of(p.name, (), (".pt",))]
        return [p for p in found if p.is_file()]

    def status(self, identity: Identity) -> str:
        """``"new"``, ``"resume"`` or ``"done"``; a :class:`RunDirError` if the directory holds something else.
        Temp files a killed write of this run left behind are removed (they are never part of a run); nothing else
        in a directory that is not this run is touched."""
        if not self.path.exists():
            return "new"
        if not self.path.is_dir():
            raise RunDirError(f"--out {self.path} is a file; choose a directory path")
        stale = self.stale_temp_files()
        if not self.config.exists():
            header = [p for p in stale if p.parent == self.path and _temp_of(p.name, (CONFIG, ENV), ())]
            if set(self.path.iterdir()) - set(header) - {self.path / LOCK}:  # a new run's lock may come first
                raise RunDirError(f"--out {self.path} holds files that are not an snnlth run; choose an empty or new "
                                  "directory")
            for tmp in header:  # killed while writing the header: the directory is still a new run
                tmp.unlink(missing_ok=True)
            return "new"
        saved = read_json(self.config)
        theirs = Identity(saved.get("kind"), legacy_semantic(saved))
        if theirs != identity:
            raise RunDirError(f"--out {self.path} holds a different run ({_describe_diff(theirs, identity)}); choose "
                              "another --out, or delete that directory to start over")
        for tmp in stale:
            tmp.unlink(missing_ok=True)
        return "done" if self.summary.exists() else "resume"

    def write_header(self, identity: Identity, cfg: Any, env: dict, **extra: Any) -> None:
        """Create the directory and write ``config.json`` (identity, resolved config, ``extra`` such as the method's
        label) and ``env.json``."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.config, {"kind": identity.kind, "semantic": identity.semantic, **extra,
                                        **config_to_dict(cfg)})
        atomic_write_json(self.env, {"starts": [*self.starts(), {**env, "started_at": time.strftime(
            "%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid(), "argv": sys.argv}]})

    def starts(self) -> list[dict]:
        """``env.json``'s entries, one per start or resume of this run (a file from before 0.4, a single entry)."""
        if not self.env.exists():
            return []
        try:
            saved = read_json(self.env)
        except RunDirError:
            return []  # a damaged provenance file does not stop a run; the new entry starts it afresh
        return list(saved["starts"]) if isinstance(saved, dict) and "starts" in saved else [saved]

    def write_metrics(self, rows: list[dict]) -> None:
        atomic_write_text(self.metrics, "".join(json.dumps(r) + "\n" for r in rows))

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.summary, summary)


def _temp_of(name: str, files: tuple[str, ...], suffixes: tuple[str, ...]) -> bool:
    """Is ``name`` (``.<target>.<random>.tmp``) the temp file of one of ``files`` or of a file ending in one of
    ``suffixes``?"""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    target = name[1:-4].rsplit(".", 1)[0]  # drop the random part tempfile adds
    return target in files or target.endswith(suffixes)


def _describe_diff(theirs: Identity, mine: Identity) -> str:
    flat = lambda d: {f"{s}.{k}": v for s, sec in d.items() if isinstance(sec, dict) for k, v in sec.items()}  # noqa
    a, b = flat(theirs.semantic), flat(mine.semantic)
    keys = sorted(set(a) | set(b))
    diffs = [f"{k}: {a.get(k, 'default')} there, {b.get(k, 'default')} here" for k in keys if a.get(k) != b.get(k)]
    if theirs.kind != mine.kind:
        diffs.insert(0, f"a {theirs.kind} run, not {mine.kind}")
    return "; ".join(diffs[:3]) or "unknown difference"
