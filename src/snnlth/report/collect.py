"""Read run directories tolerantly: a run may be finished, still running, or missing files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from snnlth.errors import SnnlthError
from snnlth.rundir.layout import CONFIG, RunLayout


class ReportError(SnnlthError):
    """Runs that cannot be reported together (other model or dataset) or paths that hold no run."""


@dataclass
class RunRecord:
    path: Path
    config: dict
    summary: dict | None
    metrics: list[dict]
    missing: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        return self.config.get("search", {}).get("method", self.config.get("kind", "?"))

    @property
    def uses_early_time(self) -> bool:
        return self.config.get("search", {}).get("early_time", "off") != "off"

    @property
    def label(self) -> str:
        """The method's label, as its registry entry gave it to the run (``IMP``, ``IMP+ET``, ``EB``, ...)."""
        recorded = (self.summary or {}).get("label") or self.config.get("label")
        if recorded:
            return recorded
        name = {"imp": "IMP", "eb": "EB"}.get(self.method, self.method)  # runs written before labels were recorded
        return f"{name}+ET" if self.uses_early_time else name

    @property
    def base_label(self) -> str:
        """The label of the same method without Early-Time (what a +ET run is compared with)."""
        recorded = (self.summary or {}).get("base_label") or self.config.get("base_label")
        return recorded or self.label.removesuffix("+ET")

    @property
    def seed(self) -> int:
        return int(self.config.get("train", {}).get("seed", 0))

    @property
    def model(self) -> str:
        return self.config.get("model", {}).get("model", "?")

    @property
    def dataset(self) -> str:
        return self.config.get("data", {}).get("dataset", "?")

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def levels(self) -> list[dict]:
        return self.summary["levels"] if self.summary else provisional_levels(self)


def _read_json(path: Path, missing: list[str]) -> dict | None:
    if not path.exists():
        missing.append(path.name)
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        missing.append(f"{path.name} (unreadable: mid-write or damaged)")
        return None


def _read_jsonl(path: Path, missing: list[str]) -> list[dict]:
    if not path.exists():
        missing.append(path.name)
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            missing.append(f"{path.name}: a line being written")
    return rows


def load_run(path: str | Path) -> RunRecord:
    path = Path(path)
    missing: list[str] = []
    run = RunLayout(path)
    config = _read_json(run.config, missing)
    if config is None:
        raise ReportError(f"{path} holds no readable config.json: not an snnlth run; pass run directories "
                          "(…/seed_<s>) or their parents")
    if config.get("kind") != "search":
        raise ReportError(f"{path} is a {config.get('kind')} run; `snnlth report` reads search runs")
    summary = _read_json(run.summary, missing)
    metrics = _read_jsonl(run.metrics, missing)
    return RunRecord(path, config, summary, metrics, missing)


def expand(paths: list[str | Path]) -> list[Path]:
    """Run directories from the given paths: a run dir itself, or a parent holding ``seed_*`` or other run dirs."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ReportError(f"{p} does not exist; pass run directories of `snnlth search`")
        if RunLayout(p).config.exists():
            out.append(p)
            continue
        found = sorted(c.parent for c in p.glob(f"*/{CONFIG}")) or sorted(c.parent for c in p.glob(f"*/*/{CONFIG}"))
        if not found:
            raise ReportError(f"{p} holds no run (no config.json in it or below); pass run directories")
        out.extend(found)
    return list(dict.fromkeys(out))


def load_runs(paths: list[str | Path]) -> list[RunRecord]:
    """All runs, checked to share one model and dataset (a report compares methods, not architectures)."""
    runs = [load_run(p) for p in expand(paths)]
    kinds = sorted({(r.model, r.dataset) for r in runs})
    if len(kinds) > 1:
        listing = ", ".join(f"{m} on {d}" for m, d in kinds)
        raise ReportError(f"these runs mix models/datasets ({listing}); report each model and dataset separately")
    return runs


def provisional_levels(run: RunRecord) -> list[dict]:
    """Levels of a run that has no summary yet: its finished rounds in ``metrics.jsonl``, with the exact sparsity
    every row of a round carries (nominal ``1 - (1 - p)^k`` only for runs written before rows carried it)."""
    s, epochs = run.config.get("search", {}), run.config.get("train", {}).get("epochs", 0)
    rate, rewind = s.get("prune_rate", 0.25), s.get("rewind_epoch", 0)
    by_phase: dict[str, list[dict]] = {}
    for row in run.metrics:
        by_phase.setdefault(row.get("phase", ""), []).append(row)
    levels = []
    for phase, rows in sorted(by_phase.items()):
        if not phase.startswith("round_"):
            continue
        k = int(phase.split("_")[1])
        if len(rows) < (epochs if k == 0 else epochs - rewind):
            continue  # round still running
        last, nominal = rows[-1], 1 - (1 - rate) ** k
        accs = [r["test_accuracy"] for r in rows if r.get("test_accuracy") is not None]
        levels.append({"round": k, "sparsity_prunable": last.get("sparsity_prunable", nominal),
                       "sparsity_all": last.get("sparsity_all", nominal), "pruned_weights": last.get("pruned_weights"),
                       "timesteps": last["timesteps"], "test_accuracy": last["test_accuracy"],
                       "best_test_accuracy": max(accs) if accs else None, "final": False, "search_seconds": None,
                       "spikes_per_image": last.get("spikes_per_image"), "layer_sparsity": {}, "provisional": True})
    return levels
