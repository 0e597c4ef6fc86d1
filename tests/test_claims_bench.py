"""bench/claims.py's own arithmetic: the methods' order rotated from seed to seed, the time ratios at every level."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def claims():
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("claims_bench", ROOT / "bench" / "claims.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["claims_bench"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_order_rotates_and_the_baselines_follow_imp(claims):
    orders = [[label for label, _ in claims.seed_order(4, {}, seed)] for seed in range(6)]
    searches = ["IMP", "IMP+ET", "IMP+ES", "IMP+ET+ES", "EB", "EB+ET"]
    assert {o[0] for o in orders} == set(searches) and len({o[-1] for o in orders}) > 1  # no fixed first or last
    for order in orders:
        assert sorted(order) == sorted([*searches, "random", "reinit"])
        i = order.index("IMP")
        assert order[i + 1:i + 3] == ["random", "reinit"]  # they need this seed's IMP run
    assert orders[1][:2] == ["IMP+ET", "IMP+ES"] and orders[6 % 6] == orders[0]
    reinit = dict(claims.seed_order(4, {}, 0))["reinit"]
    assert reinit["reinit_levels"] == ("3", "4")  # reinit's own field, not Early-Time's retrain_at


def _point(claims, key, sparsity, search, final=True):
    return claims.Point(sparsity_all=sparsity, sparsity_prunable=sparsity, accuracy=70.0, accuracy_std=0.0,
                        search_seconds=search, search_std=0.0, spikes=None, final=final, n=3, key=key)


def test_time_ratios_at_every_level_also_with_the_final_training(claims):
    cs = {"IMP": [_point(claims, 0, 0.0, 0.0), _point(claims, 1, 0.5, 10.0), _point(claims, 2, 0.75, 20.0)],
          "IMP+ET": [_point(claims, 0, 0.0, 0.0, final=False), _point(claims, 1, 0.5, 6.0, final=False),
                     _point(claims, 2, 0.75, 12.0)]}
    train = {"IMP": {0: 5.0, 1: 5.0, 2: 5.0}, "IMP+ET": {0: None, 1: None, 2: 8.0}}
    ratios = claims.time_ratios(cs, train)["IMP+ET vs IMP"]
    assert ratios["0.00"] == {"search": None, "with_final_training": None}  # 0 s of search: no ratio
    assert ratios["50.00"] == {"search": pytest.approx(0.6), "with_final_training": None}  # no final ticket
    assert ratios["75.00"] == {"search": pytest.approx(0.6), "with_final_training": pytest.approx(20 / 25)}
    text = claims.time_ratio_text({"IMP+ET vs IMP": ratios})
    assert "IMP+ET vs IMP  search            –       0.60×    0.60×" in text
    assert "IMP+ET vs IMP  + final training  –       –        0.80×" in text
