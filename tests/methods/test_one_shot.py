"""The paper's side studies as methods: SNIP at init and one-shot pruning at another T, at IMP's ticket sizes."""

import json

import pytest

from snnlth import masks as M
from snnlth.api import search
from snnlth.cli import main
from snnlth.rundir.store import load_blob
from tests.helpers import search_cfg


def _alive(run, key):
    return M.count_alive(M.unpack(load_blob(run / "masks" / f"{key}.pt")))


@pytest.mark.parametrize("neuron", ["lif", "relu"])
def test_snip_draws_imp_sized_masks_at_init(fmnist_dir, tmp_path, neuron):
    import dataclasses

    cfg = search_cfg(fmnist_dir, method="snip", rounds=2)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, neuron=neuron))
    res = search(cfg, out=tmp_path / "run")
    levels = res.summary["levels"]
    dense = M.ones_like({n: m for n, m in M.unpack(load_blob(tmp_path / "run" / "masks" / "one_shot_01.pt")).items()})
    expected = M.imp_survivors(dense, 0.25, 2)[1:]
    assert [_alive(tmp_path / "run", f"one_shot_{k:02d}") for k in (1, 2)] == expected
    assert [lv["round"] for lv in levels] == [1, 2] and all(lv["final"] for lv in levels)
    assert res.summary["one_shot"]["score"] == "snip" and 0 < levels[0]["search_seconds"] < 5


def test_oneshot_prunes_after_training_at_t_pre_and_retrains_at_t_post(fmnist_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["search", "--data-dir", str(fmnist_dir), "--model", "lenet300", "--method", "oneshot",
                 "--timesteps", "3", "--t-pre", "2", "--t-post", "3", "--rounds", "2", "--epochs", "2",
                 "--batch-size", "50", "--out", str(out), "--no-progress"]) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["timesteps"] for r in rows if r["phase"] == "dense"} == {2}
    assert {r["timesteps"] for r in rows if r["phase"].startswith("ticket")} == {3}
    summary = json.loads((out / "summary.json").read_text())
    dense_seconds = sum(r["train_seconds"] for r in rows if r["phase"] == "dense")
    assert [lv["search_seconds"] for lv in summary["levels"]] == pytest.approx([dense_seconds] * 2)
    assert summary["one_shot"]["t_pre"] == 2
    # the masks are magnitude masks of the dense network trained at T_pre
    dense = load_blob(out / "phases" / "dense.pt")["model"]
    masks = M.unpack(load_blob(out / "masks" / "one_shot_02.pt"))
    expect = M.mask_with_survivors({n: dense[n] for n in masks}, M.count_alive(masks))
    assert all((masks[n] == expect[n]).all() for n in masks)


def test_snip_score_time_is_stored_and_not_recomputed_on_resume(fmnist_dir, tmp_path):
    cfg = search_cfg(fmnist_dir, method="snip", rounds=2, epochs=1)
    first = search(cfg, out=tmp_path / "run").summary
    (tmp_path / "run" / "summary.json").unlink()  # the run is resumed: its tickets are done, the score is not redone
    (tmp_path / "run" / "phases" / "ticket_02.pt").unlink()
    again = search(cfg, out=tmp_path / "run").summary
    assert first["one_shot"]["seconds"] > 0
    assert again["one_shot"] == first["one_shot"]
    assert [lv["search_seconds"] for lv in again["levels"]] == [lv["search_seconds"] for lv in first["levels"]]
