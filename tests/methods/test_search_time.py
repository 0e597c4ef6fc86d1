"""Search time is the training time of the search, as the paper counts it, to the last float: level k of IMP spent the
training of rounds 0..k-1 (+ the Early-Time selection); an Early-Bird ticket the dense training up to its detection
epoch and the mask-distance work (+ the selection). Evaluation is reported apart, the wall clock too."""

import dataclasses
import json

import pytest

from snnlth.api import search
from tests.helpers import search_cfg

EXACT = {"rel": 1e-12, "abs": 1e-12}


def _rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _sum(rows, *keys):
    return sum(r.get(k, 0.0) for r in rows for k in keys)


def _selection(summary) -> float:
    return (summary["early_time"] or {}).get("seconds", 0.0)


@pytest.mark.parametrize("early_time", ["off", "auto"])
def test_imp_level_k_spent_the_training_of_rounds_before_k(fmnist_dir, tmp_path, early_time):
    # lambda 1.5 accepts t=2 (its normalised KL is 1 by definition): the search runs at T_early = 2 < T = 3
    cfg = search_cfg(fmnist_dir, rounds=3, early_time=early_time, et_warmup_epochs=1, et_batch=50, et_threshold=1.5,
                     retrain_at=("last", "1"))
    res = search(cfg, out=tmp_path / "r")
    rows, s = _rows(res.run_dir), res.summary
    select = _selection(s)
    assert (select > 0) == (early_time == "auto")
    for lv in s["levels"]:
        k = lv["round"]
        before = [r for r in rows if not r.get("retrain") and r["round"] < k]
        extra = select if k > 0 else 0.0
        assert lv["search_seconds"] == pytest.approx(_sum(before, "train_seconds") + extra, **EXACT)
        assert lv["search_eval_seconds"] == pytest.approx(_sum(before, "eval_seconds"), **EXACT)
        # the selection runs inside an epoch (a hook), so the rows' wall clock already holds it
        assert lv["search_wall_seconds"] == pytest.approx(_sum(before, "wall_seconds"), **EXACT)
        if k > 0:
            assert lv["search_seconds"] < lv["search_wall_seconds"] and lv["search_eval_seconds"] > 0
    assert s["search_seconds_total"] == s["levels"][-1]["search_seconds"]
    assert s["search_wall_seconds"] == s["levels"][-1]["search_wall_seconds"]
    assert s["eval_seconds"] == pytest.approx(_sum(rows, "eval_seconds"), **EXACT)
    assert s["train_seconds"] == pytest.approx(_sum(rows, "train_seconds"), **EXACT)
    assert s["total_seconds"] == pytest.approx(_sum(rows, "wall_seconds"), **EXACT)
    assert s["retrain_seconds_total"] == pytest.approx(_sum([r for r in rows if r.get("retrain")], "train_seconds"),
                                                       **EXACT)
    if early_time == "auto":  # the retrained tickets at full T are not search: level 1 did not wait for them
        assert s["early_time"]["t_early"] == 2 and s["retrain_seconds_total"] > 0


@pytest.mark.parametrize("early_time", ["off", "auto"])
def test_eb_ticket_spent_the_dense_training_to_its_detection(fmnist_dir, tmp_path, early_time):
    cfg = search_cfg(fmnist_dir, method="eb", target_sparsity=("0.3", "0.6"), eb_window=2, eb_threshold=0.5,
                     epochs=4, early_time=early_time, et_warmup_epochs=1, et_batch=50, et_threshold=1.5)
    res = search(cfg, out=tmp_path / "r")
    rows, s = _rows(res.run_dir), res.summary
    dense = [r for r in rows if r["phase"] == "eb_search"]
    assert all(r["eb_seconds"] > 0 for r in dense)
    for lv, eb in zip(s["levels"], s["eb"]):
        upto = [r for r in dense if r["epoch"] <= eb["detection_epoch"]]
        expected = _sum(upto, "train_seconds", "eb_seconds") + _selection(s)
        assert lv["search_seconds"] == pytest.approx(expected, **EXACT)
        assert lv["search_eval_seconds"] == pytest.approx(_sum(upto, "eval_seconds"), **EXACT)
        assert lv["search_wall_seconds"] == pytest.approx(_sum(upto, "wall_seconds"), **EXACT)


def test_eval_every_skips_evaluations_but_never_the_last_epoch_of_a_phase(fmnist_dir, tmp_path):
    import dataclasses

    cfg = search_cfg(fmnist_dir, rounds=1, epochs=4)
    cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, eval_every=3))
    res = search(cfg, out=tmp_path / "r")
    rows = _rows(res.run_dir)
    evaluated = [(r["phase"], r["epoch"]) for r in rows if r["test_accuracy"] is not None]
    assert evaluated == [("round_00", 3), ("round_00", 4), ("round_01", 3), ("round_01", 4)]
    assert all(r["eval_seconds"] == 0.0 and r["spikes_per_image"] is None for r in rows if r["test_accuracy"] is None)
    for lv in res.summary["levels"]:
        assert lv["test_accuracy"] is not None and lv["best_test_accuracy"] >= lv["test_accuracy"]
    # an Early-Bird stop is the last epoch of its phase: evaluated too
    eb = search(dataclasses.replace(search_cfg(fmnist_dir, method="eb", target_sparsity=("0.3",), eb_window=2,
                                               eb_threshold=0.5, epochs=6),
                                    runtime=dataclasses.replace(cfg.runtime, eval_every=10)),
                out=tmp_path / "eb")
    dense = [r for r in _rows(eb.run_dir) if r["phase"] == "eb_search"]
    assert len(dense) < 6 and [r["test_accuracy"] is not None for r in dense] == [False] * (len(dense) - 1) + [True]


@pytest.mark.parametrize("quirks", ["paper", "official"])
def test_eb_ticket_rewound_to_a_later_epoch_spent_the_training_to_that_epoch(fmnist_dir, tmp_path, quirks):
    # tau 0.99 with a window of 2: the ticket is found at epoch 2, but it is retrained from the epoch-3 state, so the
    # dense run had to reach epoch 3 (under --quirks official it is retrained from init: epoch 2 is enough)
    cfg = search_cfg(fmnist_dir, method="eb", target_sparsity=("0.3",), eb_window=2, eb_threshold=0.99, epochs=5,
                     rewind_epoch=3)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, quirks=quirks))
    res = search(cfg, out=tmp_path / "r")
    rows, s = _rows(res.run_dir), res.summary
    dense = [r for r in rows if r["phase"] == "eb_search"]
    assert s["eb"][0]["detection_epoch"] == 2 and len(dense) == 3
    upto = dense[:2] if quirks == "official" else dense[:3]
    lv = s["levels"][0]
    assert lv["search_seconds"] == pytest.approx(_sum(upto, "train_seconds", "eb_seconds"), **EXACT)
    assert lv["search_eval_seconds"] == pytest.approx(_sum(upto, "eval_seconds"), **EXACT)
    assert lv["search_wall_seconds"] == pytest.approx(_sum(upto, "wall_seconds"), **EXACT)


def test_eb_with_early_time_always_runs_early_time(fmnist_dir, tmp_path):
    # the masks settle at epoch 2, before the Early-Time warm-up (3 epochs) is over: the dense run goes on to the
    # warm-up's end, makes the choice, and the ticket's search time holds only what it needed (2 epochs)
    cfg = search_cfg(fmnist_dir, method="eb", target_sparsity=("0.3",), eb_window=2, eb_threshold=0.99, epochs=5,
                     early_time="auto", et_warmup_epochs=3, et_batch=50, et_threshold=1.5)
    res = search(cfg, out=tmp_path / "r")
    rows, s = _rows(res.run_dir), res.summary
    dense = [r for r in rows if r["phase"] == "eb_search"]
    assert s["label"] == "EB+ET" and s["early_time"] is not None and s["early_time"]["t_early"] == 2
    assert len(dense) == 3 and s["eb"][0]["detection_epoch"] == 2
    assert s["levels"][0]["search_seconds"] == pytest.approx(_sum(dense[:2], "train_seconds", "eb_seconds"), **EXACT)
