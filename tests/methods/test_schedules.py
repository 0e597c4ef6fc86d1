"""Early-Bird, round stop and Early-Time under every --schedule: every phase of theirs trains on the run's schedule
(nothing assumes cosine), and they still make their levels."""

import dataclasses
import json

import pytest

import snnlth
from tests.helpers import make_fmnist, search_cfg


@pytest.mark.parametrize("schedule,search", [("step", {"method": "eb", "early_time": "2", "target_sparsity": ("0.5",)}),
                                             ("constant", {"round_stop": "mask", "round_stop_window": 2}),
                                             ("linear", {"early_time": "2"})])
def test_methods_follow_the_schedule(tmp_path, schedule, search):
    cfg = search_cfg(make_fmnist(tmp_path / "d"), rounds=1, epochs=4, **search)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, schedule=schedule, warmup_epochs=1))
    run = snnlth.search(cfg, out=tmp_path / "run")
    assert run.levels and run.levels[-1].sparsity >= 0.25  # the tickets were drawn and trained
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lr = cfg.train.lr
    expected = {"step": [lr / 2, lr, lr * 0.1, lr * 0.01], "constant": [lr / 2, lr, lr, lr],
                "linear": [lr / 2, lr, lr * 2 / 3, lr / 3]}[schedule]  # epoch 0 warms up: lr·1/2
    for phase in {r["phase"] for r in rows}:
        got = [r["lr"] for r in rows if r["phase"] == phase]
        assert got == pytest.approx(expected[:len(got)]), phase
