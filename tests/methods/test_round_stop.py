"""--round-stop mask (IMP+ES): each IMP round ends once the mask it would hand on has settled."""

import json

import pytest
import torch

from snnlth import masks as M
from snnlth.api import search
from snnlth.config import SearchConfig
from snnlth.errors import ConfigError
from snnlth.methods.registry import METHODS, describe_methods
from snnlth.rundir.store import load_blob
from tests.helpers import search_cfg

ALWAYS = {"round_stop": "mask", "round_stop_window": 2, "round_stop_threshold": 0.99}  # settles as soon as q exist
NEVER = {"round_stop": "mask", "round_stop_window": 2, "round_stop_threshold": 1e-9}


def _rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _masks(run_dir, key):
    return M.unpack(load_blob(run_dir / "masks" / f"{key}.pt"))


def test_hamming_within_counts_only_the_rounds_alive_weights():
    alive = {"w": torch.tensor([True, True, True, True, False, False])}
    a = {"w": torch.tensor([True, True, False, False, False, False])}
    b = {"w": torch.tensor([True, False, True, False, True, False])}  # differs at 1, 2 (alive) and 4 (dead)
    assert M.hamming_within(a, b, alive) == 2 / 4
    assert M.hamming(a, b) == 3 / 6
    assert M.hamming_within(a, a, alive) == 0.0
    with pytest.raises(ValueError):
        M.hamming_within(a, {"v": b["w"]}, alive)


def test_rounds_stop_once_masks_settle_and_the_last_ticket_is_trained_in_full(fmnist_dir, tmp_path):
    res = search(search_cfg(fmnist_dir, epochs=4, rounds=2, **ALWAYS), out=tmp_path / "r")
    s, rows = res.summary, _rows(res.run_dir)
    assert s["label"] == "IMP+ES" and s["base_label"] == "IMP"
    assert s["round_stop"] == [
        {"round": k, "stop_epoch": 2, "epochs": 4, "stopped_early": True,
         "distance": [r for r in rows if r["phase"] == f"round_{k:02d}"][-1]["round_stop_distance"]}
        for k in (0, 1)]
    assert [(r["phase"], r["epoch"]) for r in rows] == [
        ("round_00", 1), ("round_00", 2), ("round_01", 1), ("round_01", 2),
        *[("retrain_02", e) for e in range(1, 5)]]  # round 2 is not trained on the path, its ticket in full
    assert [r["round_stop_distance"] is None for r in rows[:4]] == [True, False, True, False]
    levels = s["levels"]
    assert [lv["final"] for lv in levels] == [False, False, True] and levels[-1]["phase"] == "retrain_02"
    spent = sum(r["train_seconds"] + r["round_stop_seconds"] for r in rows[:4])
    assert levels[-1]["search_seconds"] == pytest.approx(spent) and s["search_seconds_total"] == levels[-1][
        "search_seconds"]
    # the mask handed on is the one drawn from the weights the round stopped with
    for k in (0, 1):
        state = load_blob(res.run_dir / "phases" / f"round_{k:02d}.pt")["model"]
        current = _masks(res.run_dir, f"round_{k:02d}")
        weights = {n: state[n] for n in current}
        assert M.hamming(M.magnitude_prune(weights, current, 0.25), _masks(res.run_dir, f"round_{k + 1:02d}")) == 0


def test_a_threshold_never_met_leaves_imps_training_and_masks_untouched(fmnist_dir, tmp_path):
    imp = search(search_cfg(fmnist_dir, rounds=2), out=tmp_path / "imp")
    es = search(search_cfg(fmnist_dir, rounds=2, **NEVER), out=tmp_path / "es")
    assert [r["stopped_early"] for r in es.summary["round_stop"]] == [False, False]
    for key in ("round_01", "round_02"):
        assert M.hamming(_masks(imp.run_dir, key), _masks(es.run_dir, key)) == 0
    imp_rows = [r for r in _rows(imp.run_dir) if r["phase"] in ("round_00", "round_01")]
    es_rows = [r for r in _rows(es.run_dir) if r["phase"] in ("round_00", "round_01")]
    assert [r["train_loss"] for r in imp_rows] == [r["train_loss"] for r in es_rows]


def test_dense_round_runs_to_the_rewind_point_and_the_early_time_warmup(fmnist_dir, tmp_path):
    res = search(search_cfg(fmnist_dir, epochs=5, rounds=1, rewind_epoch=3, **ALWAYS), out=tmp_path / "r")
    assert res.summary["round_stop"][0]["stop_epoch"] == 3 and (res.run_dir / "rewind.pt").exists()
    et = search(search_cfg(fmnist_dir, epochs=5, rounds=1, early_time="auto", et_warmup_epochs=3, et_batch=50,
                           **ALWAYS), out=tmp_path / "et")
    assert et.summary["label"] == "IMP+ET+ES" and et.summary["round_stop"][0]["stop_epoch"] == 3
    assert et.summary["early_time"]["mode"] == "auto"


def test_round_stop_is_validated_and_registered(fmnist_dir, tmp_path):
    with pytest.raises(ConfigError, match="--round-stop-window must be >= 2"):
        SearchConfig(round_stop="mask", round_stop_window=1)
    with pytest.raises(ConfigError, match="--round-stop-threshold must be in"):
        SearchConfig(round_stop="mask", round_stop_threshold=1.5)
    with pytest.raises(ConfigError, match="--round-stop must be one of off, mask"):
        SearchConfig(round_stop="epochs")
    with pytest.raises(ConfigError, match="--round-stop works with --method imp only"):
        search(search_cfg(fmnist_dir, method="eb", round_stop="mask"), out=tmp_path / "eb")
    assert not (tmp_path / "eb").exists()
    assert "--round-stop mask" in dict(describe_methods())["imp"]
    imp = METHODS.get("imp")
    off, on = search_cfg(fmnist_dir), search_cfg(fmnist_dir, **ALWAYS)
    # off: window and threshold do not name the run (runs made before the flag keep their directories)
    assert {"search.round_stop_window", "search.round_stop_threshold"} <= set(imp.ignored(off))
    assert not {"search.round_stop", "search.round_stop_threshold"} & set(imp.ignored(on))
