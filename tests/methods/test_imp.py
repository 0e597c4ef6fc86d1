import json
import math

import torch

from snnlth import masks as M
from snnlth.api import search
from snnlth.engine.loop import FitSettings, Schedule, fit
from snnlth.engine.masking import MaskEnforcer
from snnlth.engine.optim import make_optimizer
from snnlth.rundir.store import load_blob
from tests.helpers import search_cfg, search_kit


def test_sparsity_per_round_is_exact_and_masks_are_nested(fmnist_dir, tmp_path):
    res = search(search_cfg(fmnist_dir, rounds=3, prune_rate=0.3), out=tmp_path / "r")
    levels = res.summary["levels"]
    total, alive = 784 * 300 + 300 * 100 + 100 * 10, 784 * 300 + 300 * 100 + 100 * 10
    prev = None
    for k, lv in enumerate(levels):
        assert lv["round"] == k and lv["final"] and lv["timesteps"] == 3
        assert lv["sparsity_prunable"] == (total - alive) / total
        assert abs(lv["sparsity_prunable"] - (1 - 0.7 ** k)) < 1e-5
        masks = M.unpack(load_blob(res.run_dir / "masks" / f"round_{k:02d}.pt"))
        assert M.count_alive(masks) == alive
        if prev is not None:
            assert all(not (masks[n] & ~prev[n]).any() for n in masks)
        prev, alive = masks, alive - math.floor(0.3 * alive)
    # pruned weights are exactly zero at the end of every round
    for k in range(1, 4):
        state = load_blob(res.run_dir / "phases" / f"round_{k:02d}.pt")["model"]
        masks = M.unpack(load_blob(res.run_dir / "masks" / f"round_{k:02d}.pt"))
        assert all((state[n][~masks[n]] == 0).all() for n in masks)
    assert levels[2]["search_seconds"] > levels[1]["search_seconds"] > 0 == levels[0]["search_seconds"]
    s = res.summary
    assert s["method"] == "imp" and s["early_time"] is None and s["eb"] is None
    assert s["search_seconds_total"] == levels[-1]["search_seconds"] <= s["total_seconds"]


def test_late_rewind_snapshot_is_the_dense_run_after_r_epochs(fmnist_dir, tmp_path):
    cfg = search_cfg(fmnist_dir, rounds=1, rewind_epoch=1)
    res = search(cfg, out=tmp_path / "r")
    rewind = load_blob(res.run_dir / "rewind.pt")
    kit = search_kit(cfg, tmp_path / "x")
    model = kit.model
    fit(model, make_optimizer(model, cfg.train), kit.data, FitSettings(cfg.train), Schedule(3, 3, stop_epoch=1))
    assert all(torch.equal(rewind[k], v) for k, v in model.state_dict().items())  # incl. BN running stats
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["round_00"] * 3 + ["round_01"] * 2  # E - R epochs after rewinding
    assert [r["lr"] for r in rows if r["phase"] == "round_01"][0] == cfg.train.lr  # fresh schedule


def test_kit_train_starts_from_stored_state_times_mask_and_is_skipped_once_done(fmnist_dir, tmp_path):
    cfg = search_cfg(fmnist_dir)
    kit = search_kit(cfg, tmp_path / "r")
    model = kit.model
    start = {k: v.clone() + 0.5 for k, v in model.state_dict().items()}  # BN running stats included
    masks = M.magnitude_prune(kit.weights(model), kit.sizes.dense(), 0.5)
    # zero epochs of training: the phase's model is exactly the start state with the masks applied
    kit.train("p0", start, masks, stream=0, epochs=0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, start[k] * masks[k] if k in masks else start[k]), k
    # one epoch: trained from the start state, pruned weights stay exactly 0; a second call loads, not trains
    res = kit.train("p1", start, masks, stream=0, epochs=1, round=1)
    assert all((res.state[n][~masks[n]] == 0).all() for n in masks)
    assert not torch.equal(res.state["fc1.weight"], start["fc1.weight"] * masks["fc1.weight"])
    other = search_kit(cfg, tmp_path / "r")  # a fresh process's kit over the same run directory
    other.model.reinitialize(5)
    again = other.train("p1", start, masks, stream=0, epochs=1, round=1)
    assert again.history == res.history and res.history[0]["phase"] == "p1" and res.history[0]["round"] == 1
    assert all(torch.equal(v, res.state[k]) for k, v in other.model.state_dict().items())
    assert res.level("p1_masks", masks, round=1)["sparsity_prunable"] == kit.sizes.sparsity(masks)[
        "sparsity_prunable"]


def test_enforcer_keeps_pruned_at_zero_and_trains_tiny_survivors():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    mask = torch.rand(3, 6) > 0.5
    with torch.no_grad():
        model.weight[mask] = 1e-9  # tiny but alive: must still train
    enforcer = MaskEnforcer(model, {"weight": mask})
    enforcer.weights_()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(5):
        loss = model(torch.randn(8, 6)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        enforcer.grads_()
        opt.step()
        enforcer.weights_()
        assert (model.weight[~mask] == 0).all()
    assert (model.weight[mask].abs() > 1e-6).all()


def test_random_baseline_and_reinit(fmnist_dir, tmp_path):
    imp = search(search_cfg(fmnist_dir), out=tmp_path / "imp")
    rnd = search(search_cfg(fmnist_dir, method="random"), out=tmp_path / "rnd")
    assert [lv["sparsity_prunable"] for lv in rnd.summary["levels"]] == \
        [lv["sparsity_prunable"] for lv in imp.summary["levels"]]
    m_imp = M.unpack(load_blob(imp.run_dir / "masks" / "round_02.pt"))
    m_rnd = M.unpack(load_blob(rnd.run_dir / "masks" / "round_02.pt"))
    assert M.hamming(m_imp, m_rnd) > 0.1
    like = search(search_cfg(fmnist_dir, method="random", from_run=str(imp.run_dir)), out=tmp_path / "like")
    m_like = M.unpack(load_blob(like.run_dir / "masks" / "round_02.pt"))
    assert M.layer_sparsity(m_like) == M.layer_sparsity(m_imp) and M.hamming(m_like, m_imp) > 0.1

    re = search(search_cfg(fmnist_dir, method="reinit", from_run=str(imp.run_dir), reinit_levels=("all",)),
                out=tmp_path / "re")
    assert [lv["round"] for lv in re.summary["levels"]] == [0, 1, 2]
    assert all(lv["final"] and lv["search_seconds"] is None for lv in re.summary["levels"])
    m_re = M.unpack(load_blob(re.run_dir / "masks" / "level_02.pt"))
    assert M.hamming(m_re, m_imp) == 0.0
    init_imp, init_re = load_blob(imp.run_dir / "init.pt"), load_blob(re.run_dir / "init.pt")
    assert not torch.equal(init_imp["fc1.weight"], init_re["fc1.weight"])  # a fresh init, not the original


def test_exclude_and_local_scope(fmnist_dir, tmp_path):
    res = search(search_cfg(fmnist_dir, rounds=1, exclude=("fc3",), scope="local", prune_rate=0.5),
                 out=tmp_path / "r")
    masks = M.unpack(load_blob(res.run_dir / "masks" / "round_01.pt"))
    assert set(masks) == {"fc1.weight", "fc2.weight"}
    assert M.layer_sparsity(masks) == {"fc1.weight": 0.5, "fc2.weight": 0.5}
    lv = res.summary["levels"][1]
    assert lv["sparsity_prunable"] == (784 * 300 + 300 * 100) * 0.5 / (784 * 300 + 300 * 100 + 1000)


def test_reinit_levels_have_no_search_time_of_their_own(fmnist_dir, tmp_path):
    imp = search(search_cfg(fmnist_dir, rounds=1, epochs=1), out=tmp_path / "imp")
    res = search(search_cfg(fmnist_dir, method="reinit", rounds=1, epochs=1, from_run=str(imp.run_dir)),
                 out=tmp_path / "reinit")
    assert [lv["search_seconds"] for lv in res.summary["levels"]] == [None]
    assert res.summary["search_seconds_total"] is None
