"""Gradual magnitude pruning (method ``gmp``): the cubic schedule, IMP's exact survivor counts at every level taken
on the way, the run ending at t1, full-T retraining from the rewind state, Early-Time, the CLI, report, export and
the ``--from`` baselines."""

import json

import pytest
import torch

from snnlth import masks as M
from snnlth.api import search
from snnlth.cli import main
from snnlth.errors import ConfigError
from snnlth.methods.gmp import Steps, cubic_fraction, keep_at, prune_step
from snnlth.rundir.store import load_blob
from tests.helpers import one_line_error, search_cfg


def _weights(seed, shapes=(("a", (30, 20)), ("b", (50,)), ("c", (7, 9)))):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=g) for n, s in shapes}


def test_cubic_fraction_rises_fast_then_slow_from_t0_to_t1():
    assert cubic_fraction(0, 10, 50) == cubic_fraction(10, 10, 50) == 0.0
    assert cubic_fraction(50, 10, 50) == cubic_fraction(80, 10, 50) == 1.0
    assert cubic_fraction(30, 10, 50) == pytest.approx(1 - 0.5 ** 3)
    values = [cubic_fraction(t, 10, 50) for t in range(10, 51)]
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(s > 0 for s in steps) and steps[0] > steps[-1] * 10


def test_keep_at_reaches_the_final_survivors_exactly():
    assert keep_at(1000, 18, 0.0) == 1000 and keep_at(1000, 18, 1.0) == 18
    assert keep_at(1000, 18, 0.5) == 1000 - int(0.5 * 982)
    assert keep_at({"a": 100, "b": 40}, {"a": 3, "b": 2}, 1.0) == {"a": 3, "b": 2}


@pytest.mark.parametrize("scope", ["global", "local"])
def test_pruning_steps_take_every_imp_level_with_its_exact_survivors(scope):
    dense = M.ones_like(_weights(0))
    levels = M.imp_survivors(dense, 0.25, 12, scope)
    alive, taken, seen = dense, 0, {}
    for step in range(1, 41):  # 40 steps, the weights changing in between, as training does
        weights = {n: w * alive[n] for n, w in _weights(step).items()}
        keep = keep_at(levels[0], levels[-1], cubic_fraction(step, 0, 40))
        new_alive, new = prune_step(weights, alive, keep, levels, taken)
        for j, masks in new.items():
            assert j not in seen and j == taken + 1 + len([k for k in new if k < j])
            counts = M.count_alive(masks) if scope == "global" else {n: int(m.sum()) for n, m in masks.items()}
            assert counts == levels[j]  # exactly IMP's survivors (per tensor with --scope local)
            assert all(not (m & ~alive[n]).any() for n, m in masks.items())  # only weights still alive
            kept = torch.cat([weights[n][m].abs() for n, m in masks.items()])
            dropped = torch.cat([weights[n][alive[n] & ~m].abs() for n, m in masks.items()])
            if scope == "global" and len(dropped):
                assert kept.min() >= dropped.max()  # by magnitude
            seen[j] = masks
        assert all(not (m & ~alive[n]).any() for n, m in new_alive.items())  # masks only shrink
        alive, taken = new_alive, max([taken, *new])
    assert sorted(seen) == list(range(1, 13))
    final = M.count_alive(alive) if scope == "global" else {n: int(m.sum()) for n, m in alive.items()}
    assert final == levels[-1]


def test_steps_are_due_every_k_steps_and_at_t1():
    steps = Steps(t0=4, t1=20, every=5, batches=8)
    assert steps.due(4, 0) is None and steps.due(8, 0) is None
    assert steps.due(9, 0) == 9 and steps.due(13, 9) is None and steps.due(16, 9) == 14
    assert steps.due(20, 19) == 20 and steps.due(24, 20) is None  # t1 once; nothing after
    assert steps.due(24, 14) == 20  # an epoch's end catches up a point a skipped batch missed


def _gmp(fmnist_dir, **kw):
    return search_cfg(fmnist_dir, method="gmp", rounds=3, prune_rate=0.5, **kw)


def test_gmp_levels_have_imps_survivors_and_are_trained_in_full_from_the_rewind_state(fmnist_dir, tmp_path):
    cfg = _gmp(fmnist_dir, retrain_at=("all",), rewind_epoch=1, epochs=4)
    res = search(cfg, out=tmp_path / "g")
    s = res.summary
    from tests.helpers import search_kit

    sizes = search_kit(cfg, tmp_path / "k").sizes
    imp = sizes.imp_survivors(0.5, 3, "global")
    assert s["label"] == "GMP" and [lv["round"] for lv in s["levels"]] == [1, 2, 3]
    assert [lv["pruned_weights"] for lv in s["levels"]] == [imp[0] - imp[k] for k in (1, 2, 3)]
    assert all(lv["final"] and lv["timesteps"] == 3 for lv in s["levels"])
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    search_rows = [r for r in rows if r["phase"] == "gmp_search"]
    g = s["gmp"]
    assert g["t0"] == 4 and g["t1"] == round(0.75 * 4 * 4) == 12 and g["every"] == 1  # 4 batches of 50 per epoch
    assert len(search_rows) == 3 == g["epochs_run"]  # the run ends at the epoch t1 falls in, not at epoch 4
    assert [lv["step"] for lv in g["levels"]][-1] == 12
    assert search_rows[0]["gmp_sparsity"] == 0.0 < search_rows[1]["gmp_sparsity"] < search_rows[2]["gmp_sparsity"]
    for k in (1, 2, 3):  # each ticket: 3 epochs (--epochs minus the rewind epoch) at full T
        assert len([r for r in rows if r["phase"] == f"retrain_gmp_{k:02d}"]) == 3
    searched = [lv["search_seconds"] for lv in s["levels"]]
    total = sum(r["train_seconds"] for r in search_rows)
    assert searched == sorted(searched) and searched[-1] == pytest.approx(total)
    final = load_blob(res.run_dir / "phases" / "gmp_search.pt")["model"]  # pruned weights stayed exactly 0
    top = M.unpack(load_blob(res.run_dir / "masks" / "gmp_03.pt"))
    assert all((final[n][~m] == 0).all() for n, m in top.items())
    assert M.count_alive(top) == imp[3]


def test_gmp_with_early_time_searches_at_t_early_and_retrains_at_full_t(fmnist_dir, tmp_path):
    cfg = _gmp(fmnist_dir, early_time="2", timesteps=3)
    res = search(cfg, out=tmp_path / "g")
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert res.summary["label"] == "GMP+ET" and res.summary["early_time"]["t_early"] == 2
    assert {r["timesteps"] for r in rows if r["phase"] == "gmp_search"} == {2}
    assert {r["timesteps"] for r in rows if r["phase"].startswith("retrain")} == {3}
    assert [lv["round"] for lv in res.summary["levels"]] == [3]  # --retrain-at last (the default)


def test_gmp_through_the_cli_report_export_and_the_from_baselines(fmnist_dir, tmp_path, capsys):
    base = ["--data-dir", str(fmnist_dir), "--model", "lenet300", "--timesteps", "2", "--epochs", "2",
            "--batch-size", "50", "--rounds", "2", "--prune-rate", "0.5", "--no-progress"]
    run = tmp_path / "gmp"
    assert main(["search", *base, "--out", str(run), "--method", "gmp", "--retrain-at", "all", "--gmp-every", "2"]) == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["gmp"]["every"] == 2 and s["config"]["search"]["gmp_every"] == 2
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    assert "GMP" in (tmp_path / "rep" / "report.md").read_text()
    assert main(["export", str(run), "--round", "2", "--out", str(tmp_path / "t.safetensors")]) == 0
    capsys.readouterr()
    reinit = tmp_path / "reinit"
    assert main(["search", *base, "--out", str(reinit), "--method", "reinit", "--from", str(run),
                 "--reinit-levels", "all"]) == 0
    r = json.loads((reinit / "summary.json").read_text())
    assert [lv["pruned_weights"] for lv in r["levels"]] == [lv["pruned_weights"] for lv in s["levels"]]
    rand = tmp_path / "random"
    assert main(["search", *base, "--out", str(rand), "--method", "random", "--from", str(run)]) == 0
    for k in (1, 2):  # the per-layer counts of gmp's masks
        a = M.unpack(load_blob(run / "masks" / f"gmp_{k:02d}.pt"))
        b = M.unpack(load_blob(rand / "masks" / f"round_{k:02d}.pt"))
        assert {n: int(m.sum()) for n, m in a.items()} == {n: int(m.sum()) for n, m in b.items()}
        assert M.hamming(a, b) > 0


def test_gmp_bad_settings_are_one_line_errors(fmnist_dir, tmp_path, capsys):
    base = ["search", "--data-dir", str(fmnist_dir), "--out", str(tmp_path / "x"), "--method", "gmp",
            "--model", "lenet300", "--epochs", "3", "--no-progress"]  # each error before anything is written
    assert main([*base, "--gmp-end", "0"]) == 2
    assert "--gmp-end must be in (0, 1]" in one_line_error(capsys)
    assert main([*base, "--gmp-end", "0.2", "--rewind-epoch", "1"]) == 2
    assert "raise --gmp-end or lower --rewind-epoch" in one_line_error(capsys)
    assert main([*base, "--retrain-at", "0"]) == 2
    assert "gmp's tickets are levels 1..--rounds" in one_line_error(capsys)
    assert main([*base, "--round-stop", "mask"]) == 2
    assert "--round-stop works with --method imp only" in one_line_error(capsys)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="--gmp-every must be >= 1"):
        _gmp(fmnist_dir, gmp_every=0)


def test_gmp_and_lrr_search_a_users_network_through_find_ticket(tmp_path):
    import snnlth
    from tests.adapters import nets

    torch.manual_seed(0)
    data = torch.rand(32, 1, 28, 28), torch.arange(32) % 10
    small = dict(epochs=2, rounds=2, prune_rate=0.5, timesteps=2, device="cpu", progress=False, batch_size=8)
    gmp = snnlth.find_ticket(nets.SeqNet(), data, data, out=tmp_path / "gmp", method="gmp", retrain_at=("all",),
                             **small)
    lrr = snnlth.find_ticket(nets.SeqNet(), data, data, out=tmp_path / "lrr", method="lrr", lrr_jump=1, **small)
    assert [lv.round for lv in gmp.levels] == [1, 2] and [lv.round for lv in lrr.levels] == [2]
    assert gmp.levels[-1].sparsity == pytest.approx(lrr.levels[-1].sparsity)  # IMP's sizes, both


def test_a_damaged_gmp_level_is_set_aside_and_the_search_redone_with_the_same_results(fmnist_dir, tmp_path):
    cfg = _gmp(fmnist_dir, retrain_at=("all",), epochs=2)
    run = search(cfg, out=tmp_path / "g").run_dir
    before = json.loads((run / "summary.json").read_text())["levels"]
    damaged = run / "masks" / "gmp_02.pt"
    damaged.write_bytes(damaged.read_bytes()[:-9])
    (run / "summary.json").unlink()
    after = search(cfg, out=run).summary["levels"]
    keys = ("pruned_weights", "test_accuracy", "round")
    assert [[lv[k] for k in keys] for lv in after] == [[lv[k] for k in keys] for lv in before]
    assert list((run / "damaged").iterdir())  # set aside, not lost
