"""Reading unfinished runs: which phases are finished, and the levels they give."""

import json

from snnlth.api import search
from snnlth.report.collect import RunRecord, load_runs
from snnlth.report.tables import table1
from tests.helpers import search_cfg


def test_unfinished_round_stop_run_reports_its_finished_levels(fmnist_dir, tmp_path):
    cfg = search_cfg(fmnist_dir, rounds=2, epochs=4, round_stop="mask", round_stop_window=2, round_stop_threshold=0.9)
    run_dir = search(cfg, out=tmp_path / "es").run_dir
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["label"] == "IMP+ES"
    assert [r["stop_epoch"] for r in summary["round_stop"]] == [2, 2]  # both rounds ended after 2 of 4 epochs
    (run_dir / "summary.json").unlink()  # as if the run had stopped after its last retraining, before the summary

    (run,) = load_runs([run_dir])
    assert [(lv["round"], lv["final"]) for lv in run.levels] == [(0, False), (1, False), (2, True)]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = {r["phase"]: r for r in rows}
    assert [lv["test_accuracy"] for lv in run.levels[:2]] == [last["round_00"]["test_accuracy"],
                                                              last["round_01"]["test_accuracy"]]  # search path
    assert [lv["pruned_weights"] for lv in run.levels] == [lv["pruned_weights"] for lv in summary["levels"]]
    assert run.levels[2]["test_accuracy"] == summary["levels"][2]["test_accuracy"]  # the finished full-T ticket
    for key in ("effective_acs_per_image", "activation_sparsity", "energy_model", "per_timestep"):  # counts too
        assert run.levels[2][key] == summary["levels"][2][key] is not None
    _, table = table1([run])
    accuracy = next(r for r in table if r[:2] == ["IMP+ES", "accuracy %"])[2:]
    assert accuracy[:2] == [f"{lv['test_accuracy']:.2f} †" for lv in run.levels[:2]]  # on the search path
    assert accuracy[2] == f"{summary['levels'][2]['test_accuracy']:.2f}"

    (run_dir / "phases" / "retrain_02.pt").unlink()  # the last ticket's retraining still running
    (run,) = load_runs([run_dir])
    assert [(lv["round"], lv["final"]) for lv in run.levels] == [(0, False), (1, False)]


def _rows(phase: str, epochs: int, pruned: int, **tags) -> list[dict]:
    return [{"phase": phase, "epoch": e, "round": int(phase[-2:]), "timesteps": 3, "pruned_weights": pruned,
             "sparsity_all": pruned / 1000, "sparsity_prunable": pruned / 900, "test_accuracy": 50.0 + e, **tags}
            for e in range(1, epochs + 1)]


def _record(tmp_path, search: dict, rows: list[dict], phases: list[str] | None) -> RunRecord:
    """An unfinished run of 4 epochs (rewind 0), its metrics rows, and phase files when ``phases`` is not None."""
    if phases is not None:
        (tmp_path / "phases").mkdir(parents=True)
        for name in phases:
            (tmp_path / "phases" / f"{name}.pt").write_bytes(b"")
    config = {"kind": "search", "model": {"model": "lenet300", "timesteps": 3}, "data": {"dataset": "fmnist"},
              "train": {"epochs": 4, "seed": 0}, "search": {"rewind_epoch": 0, **search}}
    return RunRecord(tmp_path, config, None, rows, missing=["summary.json"])


def test_the_report_reads_the_keys_the_counting_evaluation_writes():
    from snnlth.engine.counting import COUNT_KEYS
    from snnlth.report.collect import COUNT_KEYS as REPORTED

    assert REPORTED == COUNT_KEYS  # a copy: the report imports no torch


def test_round_cut_short_in_a_run_without_phase_files_is_finished_once_the_next_began(tmp_path):
    """A run written before phase files: round 0 stopped after 2 of 4 epochs, round 1 began, so round 0 is done."""
    rows = _rows("round_00", 2, 0) + _rows("round_01", 1, 250)
    run = _record(tmp_path, {"method": "imp", "round_stop": "mask"}, rows, phases=None)
    assert [(lv["round"], lv["test_accuracy"], lv["final"]) for lv in run.levels] == [(0, 52.0, False)]


def test_finished_rounds_of_plain_imp_are_its_tickets_and_retrainings_replace_search_path_levels(tmp_path):
    imp = _record(tmp_path / "imp", {"method": "imp"}, _rows("round_00", 4, 0) + _rows("round_01", 2, 250),
                  phases=["round_00"])
    assert [(lv["round"], lv["final"]) for lv in imp.levels] == [(0, True)]  # at full T: a ticket, no †
    rows = _rows("round_00", 4, 0) + _rows("round_01", 4, 250) + _rows("retrain_01", 4, 250, retrain=True)
    for r in rows[4:8]:
        r["timesteps"] = 2  # round 1 on the search path at T_early
    et = _record(tmp_path / "et", {"method": "imp", "early_time": "auto"}, rows,
                 phases=["round_00", "round_01", "retrain_01"])
    assert [(lv["round"], lv["final"], lv["timesteps"], lv["phase"]) for lv in et.levels] == [
        (0, False, 3, "round_00"), (1, True, 3, "retrain_01")]
    assert et.levels[1]["search_test_accuracy"] == 54.0
    transfer = _record(tmp_path / "transfer", {"method": "transfer"},
                       _rows("round_00", 4, 0) + _rows("snn_00", 4, 0, retrain=True), phases=["round_00", "snn_00"])
    assert [lv["phase"] for lv in transfer.levels] == ["snn_00"]  # its rounds train the ANN twin, not tickets
