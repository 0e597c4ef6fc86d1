"""Run the registered method of a config and assemble ``summary.json`` (its keys are a contract: extend, never
rename)."""

from __future__ import annotations

import time

from snnlth.config_io import config_to_dict
from snnlth.methods.kit import MethodKit
from snnlth.methods.phases import wall_seconds
from snnlth.methods.registry import MethodResult, method_of
from snnlth.rundir.store import RunStore


def run_method(kit: MethodKit, source: RunStore | None) -> dict:
    """The summary of the method of ``kit.cfg`` run with ``kit`` (``source``: its ``--from`` run, if any)."""
    spec = method_of(kit.cfg)
    return summarize(kit, spec.run(kit, source), spec.label_of(kit.cfg), spec.label)


def summarize(kit: MethodKit, result: MethodResult, label: str, base_label: str) -> dict:
    """``search_seconds_total``: training time of the search to its sparsest ticket, as the paper counts it (None
    when it searched nothing itself: reinit); ``search_wall_seconds``: the wall clock of that search;
    ``eval_seconds``, ``train_seconds``, ``total_seconds``: every evaluation, every training, and the whole run's
    wall clock (all phases, the Early-Time selection in them)."""
    cfg, levels, rows = kit.cfg, result.levels, kit.trainer.log.rows
    return {
        "method": cfg.search.method,
        "label": label,
        "base_label": base_label,
        "timesteps": cfg.model.timesteps,
        "seed": cfg.train.seed,
        "early_time": result.early_time,
        "eb": result.eb,
        "levels": levels,
        "search_seconds_total": _latest(levels, "search_seconds"),
        "search_wall_seconds": _latest(levels, "search_wall_seconds"),
        "retrain_seconds_total": sum(r["train_seconds"] for r in rows if r.get("retrain")),
        "train_seconds": sum(r["train_seconds"] for r in rows),
        "eval_seconds": sum(r["eval_seconds"] for r in rows),
        "total_seconds": sum(wall_seconds(r) for r in rows),  # the Early-Time selection is inside a row's wall
        "model": cfg.model.model,
        "dataset": cfg.data.dataset,
        "device": str(kit.device),
        "world_size": kit.trainer.parts.dist.world_size,
        "num_parameters": kit.sizes.parameters,
        "num_prunable": kit.sizes.prunable,
        "from_run": cfg.search.from_run,
        "config": config_to_dict(cfg),
        **result.extra,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _latest(levels: list[dict], key: str) -> float | None:
    """The search time to the sparsest ticket: the largest of the levels' (None when no level searched: reinit)."""
    return max((lv[key] for lv in levels if lv[key] is not None), default=None)
