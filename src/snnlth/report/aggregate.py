"""Mean ± std over seeds per series (:mod:`snnlth.report.series`) and sparsity level: the one place where numbers
are combined. Tables and plots both read these points, so they can never disagree."""

from __future__ import annotations

import math
from dataclasses import dataclass

from snnlth.report.collect import RunRecord
from snnlth.report.series import ORDER, Series, comparisons, series

__all__ = ["ORDER", "Ops", "Point", "columns", "comparisons", "curves", "dense_accuracy", "level_key", "mean_std",
           "series_points"]


@dataclass
class Point:
    sparsity_all: float
    sparsity_prunable: float
    accuracy: float | None
    accuracy_std: float
    search_seconds: float | None
    search_std: float
    spikes: float | None
    final: bool
    n: int
    synops: float | None = None
    energy_uj: float | None = None
    ticket_bytes: float | None = None
    dense_bytes: float | None = None
    key: int | float = 0  # the column: see level_key
    timesteps: int | None = None  # of all its levels; None when they differ
    ops: Ops | None = None  # operations and activity per image; None when no level has any


@dataclass
class Ops:
    """Operations per image of a point (mean over its levels): exact as NeuroBench counts them when every level has
    them (``exact``), else the uniform-activity estimate of runs written before (``acs``/``macs`` being SynOps and
    MACs of that estimate); ``per_timestep``: mean rows ``{"t", "accuracy", "firing_rate", "effective_acs",
    "effective_macs"}`` when every level has them at the same T."""

    acs: float | None
    macs: float | None
    exact: bool
    activation_sparsity: float | None = None
    per_timestep: list[dict] | None = None


def mean_std(values: list[float | None]) -> tuple[float | None, float]:
    """Mean and sample std of the values that are not None; ``(None, 0.0)`` when none is."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None, 0.0
    m = sum(vals) / len(vals)
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0


def level_key(level: dict) -> int | float:
    """The column of a level: its exact number of pruned weights, so tickets of equal size (IMP's round k and the EB
    ticket at IMP's level k) share a column and tickets of different sizes never do. Runs written before the count
    was recorded fall back to the all-parameter sparsity."""
    pruned = level.get("pruned_weights")
    return pruned if pruned is not None else level["sparsity_all"]


def _point(key: int | float, lvs: list[dict]) -> Point:
    """One column of a series: its levels (one per seed) averaged."""
    acc, acc_std = mean_std([lv["test_accuracy"] for lv in lvs])
    sec, sec_std = mean_std([lv.get("search_seconds") for lv in lvs])
    spikes, _ = mean_std([lv.get("spikes_per_image") for lv in lvs])
    extra = [mean_std([lv.get(k) for lv in lvs])[0]
             for k in ("synops_per_image", "energy_uj_per_image", "ticket_bytes", "dense_bytes")]
    ts = {lv.get("timesteps") for lv in lvs}
    return Point(lvs[0]["sparsity_all"], lvs[0]["sparsity_prunable"], acc, acc_std, sec, sec_std, spikes,
                 all(lv["final"] for lv in lvs), len(lvs), *extra, key=key,
                 timesteps=ts.pop() if len(ts) == 1 else None, ops=_ops(lvs))


EXACT = "neurobench-effective-ops"  # a level's energy_model when its counts are NeuroBench's


def _ops(lvs: list[dict]) -> Ops | None:
    """The operations of one column's levels (see :class:`Ops`)."""
    exact = all(lv.get("energy_model") == EXACT and lv.get("effective_acs_per_image") is not None for lv in lvs)
    keys = ("effective_acs_per_image", "effective_macs_per_image") if exact else ("synops_per_image", "macs_per_image")
    acs, macs = (mean_std([lv.get(k) for lv in lvs])[0] for k in keys)
    if acs is None and macs is None:
        return None
    rows = [lv.get("per_timestep") for lv in lvs]
    same_t = all(rows) and len({len(r) for r in rows}) == 1
    per_t = [{k: mean_std([r[i].get(k) for r in rows])[0] for k in rows[0][i]} for i in range(len(rows[0]))] \
        if same_t else None
    return Ops(acs, macs, exact, mean_std([lv.get("activation_sparsity") for lv in lvs])[0], per_t)


def series_points(s: Series) -> list[Point]:
    """Points of one series sorted by sparsity, each averaged over the series' runs (seeds)."""
    groups: dict[int | float, list[dict]] = {}
    for run in s.runs:
        for lv in run.levels:
            groups.setdefault(level_key(lv), []).append(lv)
    return [_point(key, groups[key]) for key in sorted(groups, key=lambda k: groups[k][0]["sparsity_all"])]


def curves(runs: list[RunRecord]) -> dict[str, list[Point]]:
    """Series label -> points sorted by sparsity, each averaged over the runs (seeds) of that series only: runs that
    differ in anything but their seed (``--rewind-epoch``, ``--lr``, ...) are never averaged together."""
    return {s.label: series_points(s) for s in series(runs)}


def columns(cs: dict[str, list[Point]]) -> list[Point]:
    """One point per column (any label's), sorted by sparsity: the header of the Table-1 layout."""
    first: dict[int | float, Point] = {}
    for pts in cs.values():
        for p in pts:
            first.setdefault(p.key, p)
    return sorted(first.values(), key=lambda p: p.sparsity_all)


def dense_accuracy(runs: list[RunRecord]) -> float | None:
    """Mean accuracy of the dense (sparsity 0) final networks trained at the run's full T, if any run has one."""
    return mean_std([lv["test_accuracy"] for r in runs for lv in r.levels
                     if lv["sparsity_all"] == 0 and lv["final"]
                     and lv.get("timesteps", r.config["model"]["timesteps"]) == r.config["model"]["timesteps"]])[0]
