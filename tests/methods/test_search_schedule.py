"""A search schedule of its own (``--search-epochs``, ``--search-schedule``): IMP's rounds (and round stop's) train
short and anneal early, the final tickets keep ``--epochs`` and ``--schedule``; the run is labelled ``+SS``."""

import json

import pytest

from snnlth.api import search
from snnlth.cli import main
from snnlth.config import SearchRunConfig
from snnlth.errors import ConfigError
from snnlth.methods.registry import METHODS
from tests.helpers import one_line_error, search_cfg


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_imp_rounds_run_the_search_schedule_and_the_last_ticket_the_full_one(fmnist_dir, tmp_path):
    cfg = search_cfg(fmnist_dir, search_epochs=2, search_schedule="linear", epochs=4)
    res = search(cfg, out=tmp_path / "ss")
    s, rows = res.summary, _rows(res.run_dir)
    assert s["label"] == "IMP+SS"
    for k in (0, 1):
        lrs = [r["lr"] for r in rows if r["phase"] == f"round_{k:02d}"]
        assert lrs == [pytest.approx(0.05), pytest.approx(0.025)]  # 2 epochs, linear to 0
    assert "round_02" not in {r["phase"] for r in rows}  # the last ticket is trained in full instead
    full = [r["lr"] for r in rows if r["phase"] == "retrain_02"]
    assert len(full) == 4 and full[1] == pytest.approx(0.05 * 0.5 * (1 + 2 ** -0.5))  # cosine over --epochs
    assert [lv["final"] for lv in s["levels"]] == [False, False, True]
    assert s["levels"][-1]["search_seconds"] == pytest.approx(
        sum(r["train_seconds"] for r in rows if r["phase"] in ("round_00", "round_01")))


def test_round_stop_and_early_time_run_under_the_search_schedule(fmnist_dir, tmp_path):
    cfg = search_cfg(fmnist_dir, search_epochs=2, early_time="2", round_stop="mask", round_stop_window=2,
                     round_stop_threshold=0.99, epochs=3)
    res = search(cfg, out=tmp_path / "ss")
    s = res.summary
    assert s["label"] == "IMP+ET+ES+SS"
    assert [r["epochs"] for r in s["round_stop"]] == [2, 2]  # the rounds are given the search epochs
    assert {r["timesteps"] for r in _rows(res.run_dir) if r["phase"].startswith("round")} == {2}


def test_the_search_fields_name_a_run_only_where_they_change_it():
    imp = METHODS.get("imp")
    plain = SearchRunConfig()
    assert "search.retrain_at" in imp.ignored(plain)  # on the tickets' path, --retrain-at changes nothing
    ss = SearchRunConfig(search=plain.search.__class__(search_epochs=2))
    assert "search.retrain_at" not in imp.ignored(ss) and "search.search_epochs" not in imp.ignored(ss)
    assert "search.gmp_end" in imp.ignored(ss) and "search.lrr_jump" in imp.ignored(ss)
    assert "search.search_epochs" in METHODS.get("eb").ignored(ss)
    assert not SearchRunConfig(search=plain.search.__class__(search_epochs=plain.train.epochs)).search_differs
    assert METHODS.get("imp").label_of(ss) == "IMP+SS"


def test_bad_search_schedules_are_one_line_errors(fmnist_dir, tmp_path, capsys):
    base = ["search", "--data-dir", str(fmnist_dir), "--out", str(tmp_path / "x"), "--model", "lenet300",
            "--epochs", "3", "--no-progress"]
    assert main([*base, "--search-schedule", "exp"]) == 2
    assert "--search-schedule must be cosine, constant, step or linear" in one_line_error(capsys)
    assert main([*base, "--search-epochs", "0"]) == 2
    assert "--search-epochs must be >= 1" in one_line_error(capsys)
    assert main([*base, "--search-epochs", "1", "--rewind-epoch", "1"]) == 2
    assert "must be longer than --rewind-epoch 1" in one_line_error(capsys)
    assert main([*base, "--search-epochs", "2", "--early-time", "auto"]) == 2
    assert "must be longer than --et-warmup-epochs 2" in one_line_error(capsys)
    assert main([*base, "--method", "random", "--search-epochs", "2"]) == 2  # its rounds would train otherwise
    assert "--search-epochs and --search-schedule work with --method gmp or imp or lrr only" in one_line_error(capsys)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="--lrr-epochs must be >= 1"):
        search_cfg(fmnist_dir, lrr_epochs=0)
