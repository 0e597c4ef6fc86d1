"""bench/fast_search.py's own arithmetic: EB targets of exactly IMP's sizes, the rotated order, the goal lines and the
best method."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from snnlth import masks as M
from snnlth.config import ModelConfig
from snnlth.methods.kit import Sizes
from snnlth.models.catalog import create_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("fast_search_bench", ROOT / "bench" / "fast_search.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fast_search_bench"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_eb_targets_have_exactly_imps_survivors(bench):
    preset = bench.PRESETS["full"]
    sizes = Sizes.of(create_model(ModelConfig(model="convnet", timesteps=5), 1, 28, 10), ())
    keep = sizes.imp_survivors(0.25, 14, "global")
    total = keep[0]
    for target, k in zip(bench.eb_targets(preset), bench.TABLE_ROUNDS):
        assert total - M.n_to_prune(float(target), total) == keep[k]


def test_every_method_leads_one_seed_and_all_run_every_seed(bench):
    preset = bench.PRESETS["full"]
    labels = [label for label, _ in bench.methods(preset)]
    orders = [[label for label, _ in bench.seed_order(preset, s)] for s in range(len(labels))]
    assert {o[0] for o in orders} == set(labels) and all(sorted(o) == sorted(labels) for o in orders)


def _point(bench, key, accuracy, search, final=True):
    return bench.Point(sparsity_all=key / 100, sparsity_prunable=key / 100, accuracy=accuracy, accuracy_std=0.1,
                       search_seconds=search, search_std=0.0, spikes=None, final=final, n=3, key=key)


def test_the_goal_needs_both_the_time_and_the_accuracy_and_best_is_the_fastest_within_a_point(bench):
    cs = {"IMP": [_point(bench, 50, 80.0, 100.0), _point(bench, 98, 75.0, 1000.0)],
          "A": [_point(bench, 98, 74.5, 200.0)],    # within a point, 0.2x: holds
          "B": [_point(bench, 98, 73.5, 50.0)],     # fastest, 1.5 points below: fails
          "C": [_point(bench, 98, 75.2, 300.0)],    # within, 0.3x: fails on time
          "D": [_point(bench, 98, 79.0, 10.0, final=False)]}  # a search-path point is no ticket
    per, best, text = bench.goal(cs)
    assert per["A"]["holds"] and not per["B"]["holds"] and not per["C"]["holds"] and "D" not in per
    assert per["A"]["time_ratio_top"] == pytest.approx(0.2) and per["B"]["accuracy_gap_top"] == pytest.approx(1.5)
    assert best == {"label": "A", "time_ratio_top": pytest.approx(0.2), "accuracy_gap_top": pytest.approx(0.5)}
    assert "A          holds" in text and "B          FAILS" in text and "fastest within 1.0 point: A" in text
    ratios = bench.time_ratios(cs, {"IMP": {98: 100.0}, "A": {98: 100.0}})
    assert ratios["A"]["98.00"] == {"search": pytest.approx(0.2), "with_final_training": pytest.approx(300 / 1100)}
    assert ratios["B"]["98.00"]["with_final_training"] is None
    per, best, _ = bench.goal({"IMP": cs["IMP"], "B": cs["B"]})
    assert best == {"label": None, "time_ratio_top": None, "accuracy_gap_top": None}


def test_the_committed_results_are_those_the_page_shows():
    data = json.loads((ROOT / "docs" / "fast_search.json").read_text())
    page = (ROOT / "docs" / "results.md").read_text()
    for key in ("table_text", "time_ratio_text", "goal_text"):
        assert data[key].strip() in page, f"docs/results.md lacks {key} of docs/fast_search.json"
    top = data["methods"]["IMP"]["levels"][-1]
    assert data["top_sparsity"] == top["sparsity"] > 0.97 and len(data["seeds"]) == 3
    assert {"label", "time_ratio_top", "accuracy_gap_top"} <= data["best"].keys()
    for label, method in data["methods"].items():
        for level in method["levels"]:
            assert {"sparsity", "accuracy_mean", "accuracy_std", "search_seconds_mean"} <= level.keys(), label
