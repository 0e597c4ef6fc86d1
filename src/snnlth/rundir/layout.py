"""Run directories: names derived from content, the files inside, and the check that a directory holds this run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from snnlth.config_io import config_hash, config_to_dict, semantic_dict
from snnlth.errors import RunDirError
from snnlth.rundir.atomic import atomic_write_json, read_json


def default_run_dir(kind: str, cfg: Any, root: str | Path = "runs") -> Path:
    """``runs/<kind>-<model>-<dataset>-T<T>-<hash8>/seed_<s>``: rerunning the same command finds the same dir."""
    name = f"{kind}-{cfg.model.model}-{cfg.data.dataset}-T{cfg.model.timesteps}-{config_hash(cfg, kind)}"
    return Path(root) / name / f"seed_{cfg.train.seed}"


@dataclass(frozen=True)
class RunDir:
    """The files of one run. The engine never sees paths; strategies and the API go through this class."""

    path: Path

    config = property(lambda self: self.path / "config.json")
    env = property(lambda self: self.path / "env.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    summary = property(lambda self: self.path / "summary.json")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")

    def status(self, kind: str, cfg: Any) -> str:
        """``"new"``, ``"resume"`` or ``"done"``; a :class:`RunDirError` if the directory holds something else."""
        if not self.path.exists():
            return "new"
        if not self.path.is_dir():
            raise RunDirError(f"--out {self.path} is a file; choose a directory path")
        if not self.config.exists():
            if any(self.path.iterdir()):
                raise RunDirError(f"--out {self.path} holds files that are not an snnlth run; choose an empty or new "
                                  "directory")
            return "new"
        saved = read_json(self.config)
        mine = json.loads(json.dumps({"kind": kind, **semantic_dict(cfg)}))  # tuples -> lists, as saved
        theirs = {"kind": saved.get("kind"), **_semantic_of_saved(saved)}
        if mine != theirs:
            diff = _describe_diff(theirs, mine)
            raise RunDirError(f"--out {self.path} holds a different run ({diff}); choose another --out, or delete "
                              "that directory to start over")
        return "done" if self.summary.exists() else "resume"

    def write_header(self, kind: str, cfg: Any) -> None:
        """Create the directory and write ``config.json`` (resolved config) and ``env.json``."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.config, {"kind": kind, "semantic": semantic_dict(cfg), **config_to_dict(cfg)})
        atomic_write_json(self.env, environment())


def _semantic_of_saved(saved: dict) -> dict:
    return saved.get("semantic", {})


def _describe_diff(theirs: dict, mine: dict) -> str:
    flat = lambda d: {f"{s}.{k}": v for s, sec in d.items() if isinstance(sec, dict) for k, v in sec.items()}  # noqa
    a, b = flat(theirs), flat(mine)
    keys = sorted(set(a) | set(b))
    diffs = [f"{k}: {a.get(k, 'default')} there, {b.get(k, 'default')} here" for k in keys if a.get(k) != b.get(k)]
    if theirs.get("kind") != mine.get("kind"):
        diffs.insert(0, f"a {theirs.get('kind')} run, not {mine.get('kind')}")
    return "; ".join(diffs[:3]) or "unknown difference"


def environment() -> dict[str, Any]:
    """Facts needed to trust a number later: versions, git sha, device, threads."""
    from snnlth import __version__

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    cuda = torch.cuda.is_available()
    return {
        "snnlth": __version__, "git_sha": sha, "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
    }


def dumps_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)
