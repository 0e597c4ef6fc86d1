import math

import pytest
import torch
from torch import nn

from snnlth.api import search
from snnlth.methods.early_time import choose_t_early, kl_by_timestep, measure_kl
from tests.helpers import search_cfg, search_kit


def test_kl_by_hand_both_directions():
    # B=1, C=2, T=2: step logits [0, 0] then [2, 0] -> P_2 = softmax([1, 0]), P_T = P_2, so KL(2) = 0;
    # with T=3 add [4, 0]: mean of three = [2, 0]
    logits = torch.tensor([[[0.0, 0.0]], [[2.0, 0.0]], [[4.0, 0.0]]])
    kl = kl_by_timestep(logits, "paper")
    p2 = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    p3 = torch.softmax(torch.tensor([2.0, 0.0]), 0)
    assert kl[3] == pytest.approx(0.0, abs=1e-7)
    assert kl[2] == pytest.approx(float((p2 * (p2 / p3).log()).sum()), rel=1e-5)
    rev = kl_by_timestep(logits, "code")
    assert rev[2] == pytest.approx(float((p3 * (p3 / p2).log()).sum()), rel=1e-5)
    assert rev[2] != pytest.approx(kl[2])


def test_choose_t_early():
    kl = {2: 1.0, 3: 0.5, 4: 0.2, 5: 0.0}
    assert choose_t_early(kl, 0.6) == (3, {2: 1.0, 3: 0.5, 4: 0.2, 5: 0.0})
    assert choose_t_early(kl, 0.3)[0] == 4
    assert choose_t_early(kl, 0.1)[0] == 5  # only T itself
    assert choose_t_early({2: 0.0, 3: 0.0, 4: 0.0}, 0.6)[0] == 4  # degenerate: keep T


class Constructed(nn.Module):
    """Outputs whose running mean settles at a known pace: step t adds logit 2^-t to class 0."""

    def forward(self, x, timesteps):
        b = x.shape[0]
        steps = [torch.tensor([[1.0 + 8 * 0.5 ** t, 0.0]]).expand(b, 2) for t in range(timesteps)]
        return torch.stack(steps)


def test_measure_kl_on_constructed_outputs_picks_expected_t():
    kl = measure_kl(Constructed(), torch.zeros(10, 1), 5)
    t, norm = choose_t_early(kl, 0.6)
    means = [sum(1.0 + 8 * 0.5 ** s for s in range(t_)) / t_ for t_ in range(1, 6)]
    p = [torch.softmax(torch.tensor([m, 0.0]), 0) for m in means]
    expected = {t_: float((p[t_ - 1] * (p[t_ - 1] / p[4]).log()).sum()) for t_ in range(2, 6)}
    assert kl == pytest.approx(expected, rel=1e-4)
    first = next(t_ for t_ in range(2, 6) if expected[t_] / expected[2] < 0.6)
    assert t == first and not math.isclose(norm[3], 1.0)


def _rows(run_dir):
    import json

    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_forced_early_time_searches_at_n_and_retrains_at_full_t(fmnist_dir, tmp_path):
    res = search(search_cfg(fmnist_dir, early_time="2", retrain_at=("last", "1")), out=tmp_path / "r")
    s = res.summary
    assert s["early_time"] == {"mode": "forced", "t_early": 2, "kl": {}}
    rows = _rows(res.run_dir)
    search_rows = [r for r in rows if not r.get("retrain")]
    assert {r["timesteps"] for r in search_rows} == {2}
    assert {r["timesteps"] for r in rows if r.get("retrain")} == {3}
    assert {r["phase"] for r in rows} == {"round_00", "round_01", "retrain_01", "retrain_02"}  # no round 2 at T=2
    assert [(lv["round"], lv["timesteps"], lv["final"]) for lv in s["levels"]] == [(0, 2, False), (1, 3, True),
                                                                                  (2, 3, True)]
    assert s["levels"][1]["search_test_accuracy"] is not None


def test_auto_early_time_records_kl_and_warms_up_at_full_t(fmnist_dir, tmp_path):
    """The recorded KL is that of the dense model after the warm-up (reproduced here independently), T_early is the
    rule's choice on it, and every later epoch of the search runs at T_early."""
    from snnlth.engine.loop import FitSettings, Schedule, fit
    from snnlth.engine.optim import make_optimizer
    from snnlth.methods.early_time import fixed_batch

    cfg = search_cfg(fmnist_dir, early_time="auto", et_warmup_epochs=1, et_batch=64, timesteps=4, et_threshold=1.05)
    res = search(cfg, out=tmp_path / "r")
    et = res.summary["early_time"]
    kit = search_kit(cfg, tmp_path / "x")
    model = kit.model
    fit(model, make_optimizer(model, cfg.train), kit.data, FitSettings(cfg.train), Schedule(3, 4, stop_epoch=1))
    kl = measure_kl(model, fixed_batch(kit.data, 64, cfg.train.seed), 4)
    assert et["kl"] == {str(t): v for t, v in kl.items()} and et["batch"] == 64
    t_early, norm = choose_t_early(kl, 1.05)
    assert et["t_early"] == t_early and et["kl_normalized"] == {str(t): v for t, v in norm.items()}
    assert t_early < 4  # the rule accepted an earlier step, so the rest of the search is at T_early
    rows = _rows(res.run_dir)
    dense = [r for r in rows if r["phase"] == "round_00"]
    assert dense[0]["timesteps"] == 4 and all(r["timesteps"] == t_early for r in dense[1:])
    assert {r["timesteps"] for r in rows if not r.get("retrain") and r["phase"] != "round_00"} == {t_early}
    assert {r["timesteps"] for r in rows if r.get("retrain")} == {4}
