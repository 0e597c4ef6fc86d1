"""summary.json level entries after a tiny search: the operations, sparsities and per-timestep rows of each ticket's
last evaluation (a contract other tools parse), and the rows of epochs evaluated without counting."""

import json

import pytest

from snnlth.api import search
from snnlth.engine.counting import COUNT_KEYS
from snnlth.engine.energy import E_AC_PJ, E_MAC_PJ
from tests.helpers import search_cfg

NEW_KEYS = {"effective_acs_per_image", "effective_macs_per_image", "dense_ops_per_image", "activation_sparsity",
            "connection_sparsity", "energy_model", "per_timestep"}
OLD_KEYS = {"spikes_per_image", "synops_per_image", "macs_per_image", "energy_uj_per_image", "dense_bytes",
            "ticket_bytes"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from tests.helpers import make_fmnist

    root = tmp_path_factory.mktemp("levels")
    return search(search_cfg(make_fmnist(root / "data"), rounds=1, prune_rate=0.5), out=root / "run").run_dir


def test_levels_hold_the_exact_counts_and_the_rows_per_timestep(run_dir):
    levels = json.loads((run_dir / "summary.json").read_text())["levels"]
    assert len(levels) == 2
    for lv in levels:
        assert NEW_KEYS | OLD_KEYS <= set(lv)
        assert lv["energy_model"] == "neurobench-effective-ops"
        acs, macs = lv["effective_acs_per_image"], lv["effective_macs_per_image"]
        assert acs > 0 and macs > 0 and acs + macs < lv["dense_ops_per_image"]
        assert (lv["synops_per_image"], lv["macs_per_image"]) == (acs, macs)  # the old keys: the same numbers
        assert lv["energy_uj_per_image"] == pytest.approx((acs * E_AC_PJ + macs * E_MAC_PJ) * 1e-6)
        assert 0 < lv["activation_sparsity"] < 1
        # the masks' zeros are the only zero weights of lenet300 (every weight is prunable)
        assert lv["connection_sparsity"] == pytest.approx(lv["sparsity_prunable"])
        rows = lv["per_timestep"]
        assert [r["t"] for r in rows] == [1, 2, 3] and all(set(r) == {"t", "accuracy", "firing_rate",
                                                                      "effective_acs", "effective_macs"} for r in rows)
        assert rows[-1]["accuracy"] == lv["test_accuracy"]
        assert rows[-1]["effective_acs"] == pytest.approx(acs) and rows[-1]["effective_macs"] == pytest.approx(macs)
        assert rows[0]["effective_macs"] == pytest.approx(macs)  # lenet300's fc1 runs once per image, at step 1
        assert [r["effective_acs"] for r in rows] == sorted(r["effective_acs"] for r in rows)  # cumulative
        assert 0 < rows[-1]["firing_rate"] < 1
    dense, ticket = levels
    assert dense["connection_sparsity"] == 0.0 and ticket["dense_ops_per_image"] == dense["dense_ops_per_image"]


def test_epochs_evaluated_without_counting_have_none_for_every_count_key(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = {r["phase"]: r for r in rows}
    for r in rows:
        counted = r is last[r["phase"]]
        assert all((r[k] is not None) == counted for k in COUNT_KEYS), r["epoch"]
        assert r["test_accuracy"] is not None
