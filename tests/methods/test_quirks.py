"""``--quirks official``: where the official code differs from the paper's text, each reproduced on request."""

import dataclasses
import json

import torch

from snnlth.api import search
from snnlth.config import TrainConfig
from snnlth.engine.optim import make_optimizer
from snnlth.methods.early_time import choose_t_early
from snnlth.rundir.store import load_blob
from tests.helpers import search_cfg


def _official(cfg):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, quirks="official"))


def test_weight_decay_lands_in_dampening_as_in_the_official_code():
    model = torch.nn.Linear(2, 2)
    paper = make_optimizer(model, TrainConfig()).param_groups[0]
    official = make_optimizer(model, TrainConfig(quirks="official")).param_groups[0]
    assert (paper["weight_decay"], paper["dampening"]) == (5e-4, 0)
    assert (official["weight_decay"], official["dampening"]) == (0.0, 5e-4)


def test_official_t_early_normalises_by_the_max_over_candidates_2_to_4():
    kl = {2: 0.5, 3: 1.0, 4: 0.55, 5: 0.0, 6: 0.0}
    assert choose_t_early(kl, 0.6)[0] == 5  # by t = 2: 3 -> 2.0, 4 -> 1.1, 5 -> 0
    t, norm = choose_t_early(kl, 0.6, by="max", candidates=(2, 3, 4))
    assert t == 2 and norm[3] == 1.0  # by the max (t = 3): 2 -> 0.5 < 0.6
    assert choose_t_early({2: 1.0, 3: 0.9, 4: 0.8, 5: 0.1}, 0.6, by="max", candidates=(2, 3, 4))[0] == 5  # else T


def test_official_early_bird_runs_at_twice_the_lr_and_retrains_from_init(fmnist_dir, tmp_path):
    cfg = _official(search_cfg(fmnist_dir, method="eb", target_sparsity=("0.5",), rewind_epoch=1, eb_window=2,
                               early_time="auto", et_warmup_epochs=1))
    out = tmp_path / "run"
    search(cfg, out=out)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    dense = [r for r in rows if r["phase"] == "eb_search"]
    retrain = [r for r in rows if r["phase"] == "retrain_eb_0"]
    assert dense[0]["lr"] == 2 * cfg.train.lr and retrain[0]["lr"] == cfg.train.lr
    assert len(retrain) == cfg.train.epochs  # from init: the whole schedule, not epochs - rewind
    et = json.loads((out / "early_time.json").read_text())
    assert et["direction"] == "code" and et["normalised_by"] == "max"
    config = json.loads((out / "config.json").read_text())
    assert config["semantic"]["train"]["quirks"] == "official"


def test_official_runs_draw_their_seed_and_keep_it_on_resume(fmnist_dir, tmp_path):
    cfg = _official(search_cfg(fmnist_dir, rounds=1, epochs=1))
    a, b = search(cfg, out=tmp_path / "a"), search(cfg, out=tmp_path / "b")
    seed_a = json.loads((tmp_path / "a" / "official_seed.json").read_text())["seed"]
    assert a.summary["seed"] == seed_a != b.summary["seed"]  # two runs, two seeds (as the official code)
    init_a, init_b = (load_blob(d / "init.pt") for d in (a.run_dir, b.run_dir))
    assert any(not torch.equal(init_a[k], init_b[k]) for k in init_a)  # and two inits
    again = search(cfg, out=tmp_path / "a")
    assert again.status == "done" and again.summary["seed"] == seed_a
