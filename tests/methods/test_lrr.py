"""Compressed IMP with learning-rate rewinding (method ``lrr``): IMP's exact levels a few at a time, rounds retrained
from the current weights with the lr from its peak again, the final tickets rewound and trained in full."""

import json

import pytest
import torch

from snnlth import masks as M
from snnlth.api import search
from snnlth.cli import main
from snnlth.methods.kit import MethodKit
from snnlth.methods.lrr import lrr_rounds
from snnlth.rundir.store import load_blob
from tests.helpers import one_line_error, search_cfg, search_kit


def test_lrr_rounds_jump_through_imps_levels_and_end_at_the_last():
    assert lrr_rounds(14, 5) == [0, 5, 10, 14]
    assert lrr_rounds(4, 2) == [0, 2, 4]
    assert lrr_rounds(4, 4) == [0, 4]
    assert lrr_rounds(3, 5) == [0, 3]


def test_lrr_rounds_start_from_the_current_weights_and_tickets_from_the_rewind_state(fmnist_dir, tmp_path,
                                                                                    monkeypatch):
    starts = {}
    train = MethodKit.train

    def spy(self, name, start, masks, **how):
        starts[name] = {k: v.clone() for k, v in start.items()}
        return train(self, name, start, masks, **how)

    monkeypatch.setattr(MethodKit, "train", spy)
    cfg = search_cfg(fmnist_dir, method="lrr", rounds=4, prune_rate=0.5, lrr_jump=2, lrr_epochs=2,
                     retrain_at=("all",), rewind_epoch=1)
    res = search(cfg, out=tmp_path / "l")
    s, run = res.summary, res.run_dir
    imp = search_kit(cfg, tmp_path / "k").sizes.imp_survivors(0.5, 4, "global")
    assert s["label"] == "LRR" and [lv["round"] for lv in s["levels"]] == [2, 4]
    assert [lv["pruned_weights"] for lv in s["levels"]] == [imp[0] - imp[2], imp[0] - imp[4]]
    assert [r["imp_round"] for r in s["lrr"]] == [0, 2, 4] and s["lrr"][-1]["search_test_accuracy"] is None
    dense_end = load_blob(run / "phases" / "lrr_00.pt")["model"]
    assert all(torch.equal(starts["lrr_01"][k], v) for k, v in dense_end.items())  # not rewound
    rewind = load_blob(run / "rewind.pt")
    for name in ("retrain_lrr_01", "retrain_lrr_02"):
        assert all(torch.equal(starts[name][k], v) for k, v in rewind.items())
        assert not all(torch.equal(starts[name][k], v) for k, v in dense_end.items())
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    lrr_rows = [r for r in rows if r["phase"] == "lrr_01"]
    assert [r["lr"] for r in lrr_rows] == [pytest.approx(0.05), pytest.approx(0.025)]  # from the peak again
    assert "lrr_02" not in {r["phase"] for r in rows}  # the last mask needs no round of its own
    assert len([r for r in rows if r["phase"] == "retrain_lrr_02"]) == 2  # --epochs 3 minus the rewind epoch
    m1 = M.unpack(load_blob(run / "masks" / "lrr_01.pt"))
    m2 = M.unpack(load_blob(run / "masks" / "lrr_02.pt"))
    assert all(not (m2[n] & ~m1[n]).any() for n in m1)  # pruned from round 1's survivors
    search_rows = [r for r in rows if r["phase"] in ("lrr_00", "lrr_01")]
    assert s["levels"][0]["search_seconds"] == pytest.approx(
        sum(r["train_seconds"] for r in search_rows if r["phase"] == "lrr_00"))
    assert s["levels"][1]["search_seconds"] == pytest.approx(sum(r["train_seconds"] for r in search_rows))


def test_lrr_retrain_at_names_imps_levels_and_takes_lrrs_nearest(fmnist_dir, tmp_path):
    cfg = search_cfg(fmnist_dir, method="lrr", rounds=4, prune_rate=0.5, lrr_jump=2, retrain_at=("1",),
                     early_time="2", epochs=2)
    s = search(cfg, out=tmp_path / "l").summary
    assert s["label"] == "LRR+ET" and [lv["round"] for lv in s["levels"]] == [2]  # IMP's round 1 -> lrr's round 2
    assert s["levels"][0]["timesteps"] == 3 and s["early_time"]["t_early"] == 2


def test_lrr_through_the_cli_report_export_and_reinit(fmnist_dir, tmp_path, capsys):
    base = ["--data-dir", str(fmnist_dir), "--model", "lenet300", "--timesteps", "2", "--epochs", "2",
            "--batch-size", "50", "--rounds", "3", "--prune-rate", "0.5", "--no-progress"]
    run = tmp_path / "lrr"
    assert main(["search", *base, "--out", str(run), "--method", "lrr", "--lrr-jump", "2"]) == 0
    s = json.loads((run / "summary.json").read_text())
    assert [lv["round"] for lv in s["levels"]] == [3]
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    assert "LRR" in (tmp_path / "rep" / "report.md").read_text()
    assert main(["export", str(run), "--out", str(tmp_path / "t.safetensors")]) == 0
    assert main(["search", *base, "--out", str(tmp_path / "re"), "--method", "reinit", "--from", str(run)]) == 0
    r = json.loads((tmp_path / "re" / "summary.json").read_text())
    assert r["levels"][0]["pruned_weights"] == s["levels"][0]["pruned_weights"]
    capsys.readouterr()
    assert main(["search", *base, "--out", str(tmp_path / "ra"), "--method", "random", "--from", str(run)]) == 2
    assert "takes a run of imp or random or gmp" in one_line_error(capsys)
    assert main(["search", *base, "--out", str(tmp_path / "x"), "--method", "lrr", "--lrr-jump", "0"]) == 2
    assert "--lrr-jump must be >= 1" in one_line_error(capsys)
