"""Read run directories tolerantly: a run may be finished, still running, or missing files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from snnlth.errors import SnnlthError
from snnlth.rundir.layout import CONFIG, RunLayout

NO_SEARCH_METHODS = ("reinit",)  # train the masks of another run: no search time of their own
ROUND_TICKET_METHODS = ("imp", "random")  # their rounds, at full T, are the tickets themselves
TWIN_ROUND_METHODS = ("transfer",)  # their round_<k> phases train the ANN twin; the tickets are retrainings
# what a phase's last (counting) evaluation writes, as snnlth.engine.counting.COUNT_KEYS (the report imports no torch)
COUNT_KEYS = ("spikes_per_image", "synops_per_image", "macs_per_image", "energy_uj_per_image",
              "effective_acs_per_image", "effective_macs_per_image", "dense_ops_per_image", "activation_sparsity",
              "connection_sparsity", "energy_model", "per_timestep")


class ReportError(SnnlthError):
    """Runs that cannot be reported together (other model or dataset, one seed twice in a series) or paths that hold
    no run."""


@dataclass
class RunRecord:
    path: Path
    config: dict
    summary: dict | None
    metrics: list[dict]
    missing: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        recorded = (self.summary or {}).get("method")
        return recorded or self.config.get("search", {}).get("method", self.config.get("kind", "?"))

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
        """The label of the same method without its modifiers (Early-Time, round stop): the label of the series a
        ``+ET`` or ``+ES`` run is compared with."""
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
        """The summary's levels (while there is none, those of its finished phases: :func:`provisional_levels`).
        A reinit level has no search of its own, so its ``search_seconds`` is None whatever an older run wrote
        (0.0)."""
        levels = self.summary["levels"] if self.summary else provisional_levels(self)
        if self.method in NO_SEARCH_METHODS:
            return [{**lv, "search_seconds": None} for lv in levels]
        return levels


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


def _round_of(phase: str) -> int:
    return int(phase.split("_")[1])


def finished_phases(run: RunRecord, by_phase: dict[str, list[dict]]) -> list[str]:
    """The phases in ``metrics.jsonl`` that finished: those whose phase file exists (a round that ``--round-stop``
    cut short has fewer rows than epochs, and is finished all the same). Runs written without phase files: the
    rounds that a later round followed, or whose rows reach the epochs."""
    layout = RunLayout(run.path)
    if layout.phase_file("_").parent.is_dir():  # the run's phases folder: the run writes phase files
        return [p for p in by_phase if layout.phase_file(p).exists()]
    epochs, rewind = run.config.get("train", {}).get("epochs", 0), run.config.get("search", {}).get("rewind_epoch", 0)
    rounds = sorted((p for p in by_phase if p.startswith("round_")), key=_round_of)
    return [p for i, p in enumerate(rounds) if i < len(rounds) - 1
            or len(by_phase[p]) >= (epochs if _round_of(p) == 0 else epochs - rewind)]


def _off_path(config: dict) -> bool:
    """Whether Early-Time or round stop takes the rounds off the tickets' path (their accuracies are the search's)."""
    s = config.get("search", {})
    return s.get("early_time", "off") != "off" or s.get("round_stop", "off") != "off"


def _provisional(phase: str, rows: list[dict], k: int | None, final: bool, rate: float) -> dict:
    """Round ``k``'s level from the rows of one finished phase, at the exact sparsity its rows carry (nominal
    ``1 - (1 - p)^k`` only for runs written before rows carried it)."""
    last, nominal = rows[-1], 1 - (1 - rate) ** (k or 0)
    accs = [r["test_accuracy"] for r in rows if r.get("test_accuracy") is not None]
    return {"round": k, "sparsity_prunable": last.get("sparsity_prunable", nominal),
            "sparsity_all": last.get("sparsity_all", nominal), "pruned_weights": last.get("pruned_weights"),
            "timesteps": last["timesteps"], "test_accuracy": last["test_accuracy"],
            "best_test_accuracy": max(accs) if accs else None, "final": final, "search_seconds": None,
            **{k: last.get(k) for k in COUNT_KEYS}, "layer_sparsity": {}, "provisional": True, "phase": phase}


def provisional_levels(run: RunRecord) -> list[dict]:
    """Levels of a run that has no summary yet, from its finished phases in ``metrics.jsonl``: each round (a ticket
    when IMP's rounds run at full T, else the search path's accuracy, not final), replaced by its full-T retraining
    once that finished, and each other finished retraining (Early-Bird, reinit and transfer tickets)."""
    rate = run.config.get("search", {}).get("prune_rate", 0.25)
    by_phase: dict[str, list[dict]] = {}
    for row in run.metrics:
        by_phase.setdefault(row.get("phase", ""), []).append(row)
    done = finished_phases(run, by_phase)
    tickets = run.method in ROUND_TICKET_METHODS and not _off_path(run.config)
    levels: dict[tuple, dict] = {}
    if run.method not in TWIN_ROUND_METHODS:  # their rounds train the ANN twin, not the run's SNN
        for phase in sorted((p for p in done if p.startswith("round_")), key=_round_of):
            k = _round_of(phase)
            levels[("round", k)] = _provisional(phase, by_phase[phase], k, tickets, rate)
    for phase in (p for p in done if by_phase[p][-1].get("retrain")):
        k = by_phase[phase][-1].get("round")
        on_path = levels.get(("round", k), {})
        levels[("round", k) if k is not None else ("phase", phase)] = {
            **_provisional(phase, by_phase[phase], k, True, rate), "search_test_accuracy": on_path.get("test_accuracy")}
    return sorted(levels.values(), key=lambda lv: lv["sparsity_all"])
