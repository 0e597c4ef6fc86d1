"""Finished run directories of the shapes ``snnlth search`` writes (trimmed), made in a few milliseconds."""

from __future__ import annotations

import json
from pathlib import Path

from snnlth.rundir.layout import RunLayout

LABELS = {"imp": "IMP", "eb": "EB"}


def write_run(path: Path, semantic: dict, seed: int, accuracies: list[float], label: str | None = None) -> Path:
    """A run whose ``config.json`` holds ``semantic`` (its identity; resolved values at their defaults otherwise)
    and whose summary has one final level per accuracy: round k at IMP's exact counts for lenet300 at rate 0.25."""
    search = semantic.get("search", {})
    method = search.get("method", "imp")
    plain = LABELS.get(method, method)
    label = label or plain + ("+ET" if search.get("early_time", "off") != "off" else "")
    resolved = {"data": {"dataset": "fmnist"}, "model": {"model": "lenet300", "timesteps": 3},
                "train": {"epochs": 2, "seed": seed, "lr": 0.05, **semantic.get("train", {})},
                "search": {"method": method, "rewind_epoch": 0, "scope": "global", "from_run": None, **search}}
    run = RunLayout(path)
    path.mkdir(parents=True)
    run.config.write_text(json.dumps({"kind": "search", "semantic": semantic, "label": label, "base_label": plain,
                                      **resolved}))
    levels = [{"round": k, "sparsity_prunable": 1 - 0.75 ** k, "sparsity_all": (1 - 0.75 ** k) * 0.9984,
               "pruned_weights": round(266200 * (1 - 0.75 ** k)), "timesteps": 3, "test_accuracy": acc,
               "search_seconds": None, "final": True} for k, acc in enumerate(accuracies)]
    run.summary.write_text(json.dumps({"method": method, "label": label, "base_label": plain, "seed": seed,
                                       "levels": levels}))
    run.metrics.write_text("")
    return path
