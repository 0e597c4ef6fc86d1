"""Table-1 rows from hand-made summaries: every number checked against a hand computation."""

from pathlib import Path

from snnlth.report.collect import RunRecord
from snnlth.report.tables import table1


def _run(method: str, early_time: str, levels: list[tuple], seed: int = 0) -> RunRecord:
    """levels: (sparsity_all, accuracy, search_seconds, final)."""
    config = {"kind": "search", "model": {"model": "convnet", "timesteps": 5}, "data": {"dataset": "fmnist"},
              "train": {"seed": seed}, "search": {"method": method, "early_time": early_time}}
    lvs = [{"round": i, "sparsity_all": s, "sparsity_prunable": s, "test_accuracy": a, "search_seconds": t,
            "final": f, "timesteps": 5 if f else 3} for i, (s, a, t, f) in enumerate(levels)]
    return RunRecord(Path(f"/runs/{method}{early_time}{seed}"), config, {"levels": lvs, "early_time": None}, [])


def _row(rows, label, metric):
    return next(r[2:] for r in rows if r[:2] == [label, metric])


def test_delta_only_between_full_t_tickets_and_speedup_everywhere():
    imp = _run("imp", "off", [(0.0, 80.0, 0.0, True), (0.2, 79.0, 100.0, True), (0.4, 78.0, 200.0, True)])
    # IMP+ET: levels 0 and 1 are search-path accuracies at T_early (not final), level 2 retrained at full T
    et = _run("imp", "auto", [(0.0, 70.0, 0.0, False), (0.2, 71.0, 40.0, False), (0.4, 77.5, 80.0, True)])
    header, rows = table1([imp, et])
    assert header == ["method", "metric", "0.00 %", "20.00 %", "40.00 %"]
    assert _row(rows, "IMP+ET", "accuracy %") == ["70.00 †", "71.00 †", "77.50"]
    assert _row(rows, "IMP+ET vs IMP", "Δ accuracy") == ["–", "–", "-0.50"]
    assert _row(rows, "IMP+ET vs IMP", "speed-up") == ["–", "2.50×", "2.50×"]
    assert _row(rows, "IMP", "search time") == ["0.0 s", "100.0 s", "200.0 s"]


def test_delta_and_speedup_average_over_seeds():
    imps = [_run("eb", "off", [(0.3, 80.0 + s, 10.0 * (s + 1), True)], seed=s) for s in range(2)]
    ets = [_run("eb", "auto", [(0.3, 79.0 + 2 * s, 5.0, True)], seed=s) for s in range(2)]
    header, rows = table1([*imps, *ets])
    assert _row(rows, "EB", "accuracy %") == ["80.50 ± 0.71"]
    assert _row(rows, "EB+ET vs EB", "Δ accuracy") == ["-0.50"]  # mean 80.0 vs mean 80.5
    assert _row(rows, "EB+ET vs EB", "speed-up") == ["3.00×"]  # mean 15 s vs 5 s


def test_columns_are_matched_by_exact_pruned_count_not_by_rounding():
    imp = _run("imp", "off", [(0.0, 80.0, 0.0, True), (0.25, 79.0, 10.0, True)])
    eb = _run("eb", "off", [(0.25, 78.0, 2.0, True), (0.250004, 77.0, 3.0, True)])
    for run, counts in ((imp, [0, 25_000]), (eb, [25_000, 25_000 + 4])):
        for lv, c in zip(run.summary["levels"], counts):
            lv["pruned_weights"] = c
    eb.summary["levels"][1]["sparsity_all"] = 0.25 + 4 / 100_000
    header, rows = table1([imp, eb])
    assert header == ["method", "metric", "0.00 %", "25.00 %", "25.00 %"]  # equal to 4 decimals, still apart
    assert _row(rows, "IMP", "accuracy %") == ["80.00", "79.00", "–"]
    assert _row(rows, "EB", "accuracy %") == ["–", "78.00", "77.00"]


def test_runs_written_before_0_2_are_flagged():
    from snnlth.report.tables import run_table

    new = _run("imp", "off", [(0.0, 80.0, 0.0, True)])
    new.summary["search_wall_seconds"] = 0.0
    old = _run("imp", "off", [(0.0, 80.0, 0.0, True)], seed=1)
    _, rows = run_table([new, old])
    assert rows[0][-1] == "finished" and "search time counts evaluation" in rows[1][-1]
