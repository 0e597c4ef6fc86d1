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


def test_delta_only_between_tickets_of_equal_timesteps():
    imp = _run("imp", "off", [(0.2, 79.0, 100.0, True)])
    other = _run("imp", "auto", [(0.2, 77.0, 40.0, True)])
    other.summary["levels"][0]["timesteps"] = 3  # a final ticket retrained at --t-post 3, next to a T = 5 one
    _, rows = table1([imp, other])
    assert _row(rows, "IMP+ET vs IMP", "Δ accuracy") == ["–"]
    assert _row(rows, "IMP+ET vs IMP", "speed-up") == ["2.50×"]  # search time compares at any T


def test_point_timesteps_are_those_of_its_levels_or_none():
    from snnlth.report.aggregate import curves

    runs = [_run("imp", "off", [(0.2, 79.0 + s, 10.0, True)], seed=s) for s in range(2)]
    assert [p.timesteps for p in curves(runs)["IMP"]] == [5]
    runs[1].summary["levels"][0]["timesteps"] = 3
    assert [p.timesteps for p in curves(runs)["IMP"]] == [None]
    other = _run("imp", "auto", [(0.2, 70.0, 5.0, True)])
    _, rows = table1([*runs, other])
    assert _row(rows, "IMP+ET vs IMP", "Δ accuracy") == ["–"]  # the IMP point mixes T = 5 and T = 3


def test_dense_accuracy_counts_only_dense_tickets_at_the_runs_full_t():
    from snnlth.report.aggregate import dense_accuracy

    full = _run("imp", "off", [(0.0, 80.0, 0.0, True), (0.2, 79.0, 10.0, True)])
    short = _run("oneshot", "off", [(0.0, 60.0, 0.0, True)])
    short.summary["levels"][0]["timesteps"] = 3  # dense, final, but retrained at T = 3 of the run's 5
    assert dense_accuracy([full, short]) == 80.0


def test_reinit_levels_have_no_search_time():
    from snnlth.report.plots import search_time
    from snnlth.report.tables import run_table

    imp = _run("imp", "off", [(0.0, 80.0, 0.0, True), (0.2, 79.0, 100.0, True)])
    older = _run("reinit", "off", [(0.2, 70.0, 0.0, True)])  # written before reinit recorded None: 0.0
    newer = _run("reinit", "off", [(0.2, 71.0, None, True)], seed=1)
    newer.summary["method"] = "reinit"
    runs = [imp, older, newer]
    header, rows = table1(runs)
    assert _row(rows, "reinit", "search time") == ["–", "–"]
    assert _row(rows, "reinit", "accuracy %") == ["–", "70.50 ± 0.71"]
    ax = search_time(runs).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["IMP"]  # reinit has no bar
    assert [round(p.get_height(), 6) for p in ax.patches] == [100.0]
    older.summary["search_seconds_total"] = 0.0
    header, rows = run_table(runs)
    search = header.index("search")
    assert [row[search] for row in rows] == ["–", "–", "–"]  # IMP's summary here has no total either
    imp.summary["search_seconds_total"] = 100.0
    assert [row[search] for row in run_table(runs)[1]] == ["100.0 s", "–", "–"]


def test_spikes_figure_shows_only_tickets_at_the_runs_full_t():
    from snnlth.report.plots import spikes_vs_sparsity

    imp = _run("imp", "off", [(0.0, 80.0, 0.0, True), (0.2, 79.0, 10.0, True)])
    one_shot = _run("oneshot", "off", [(0.2, 75.0, 5.0, True), (0.4, 74.0, 5.0, True)])
    one_shot.summary["levels"][1]["timesteps"] = 3  # retrained at --t-post 3 of the run's T = 5
    for run in (imp, one_shot):
        for lv in run.summary["levels"]:
            lv["spikes_per_image"] = 1000.0 * lv["timesteps"]
    lines = spikes_vs_sparsity([imp, one_shot]).axes[0].get_lines()
    assert [(line.get_label(), list(line.get_xdata())) for line in lines] == [("IMP", [0.0, 20.0]),
                                                                             ("oneshot", [20.0])]


def _with_ops(run: RunRecord, exact: bool) -> RunRecord:
    """Storage and operations on every level: the keys a run writes now (``exact``) or before exact counts."""
    for k, lv in enumerate(run.summary["levels"]):
        lv.update(ticket_bytes=1024.0, dense_bytes=4096.0, synops_per_image=2e6 - k * 1e6, macs_per_image=1e5,
                  energy_uj_per_image=1.0)
        if exact:
            lv.update(effective_acs_per_image=lv["synops_per_image"], effective_macs_per_image=1e5,
                      activation_sparsity=0.9 + k / 100, energy_model="neurobench-effective-ops")
    return run


def test_ticket_table_shows_the_exact_counts_and_marks_the_estimate_of_older_runs():
    from snnlth.report.tables import ticket_table

    new = _with_ops(_run("imp", "off", [(0.0, 80.0, 0.0, True), (0.2, 79.0, 10.0, True)]), exact=True)
    old = _with_ops(_run("eb", "off", [(0.2, 78.0, 5.0, True)]), exact=False)
    header, rows = ticket_table([new, old])
    cols = [header.index(h) for h in ("Effective ACs / image", "Effective MACs / image", "activation sparsity",
                                      "energy / image")]
    assert [[row[c] for c in cols] for row in rows] == [["2.000 M", "0.100 M", "0.900", "1.000 µJ"],
                                                        ["1.000 M", "0.100 M", "0.910", "1.000 µJ"],
                                                        ["≈ 2.000 M", "≈ 0.100 M", "–", "≈ 1.000 µJ"]]
    bare = _run("imp", "off", [(0.0, 80.0, 0.0, True)])  # storage only: no operations recorded
    bare.summary["levels"][0].update(ticket_bytes=1024.0, dense_bytes=4096.0)
    assert [ticket_table([bare])[1][0][c] for c in cols] == ["–"] * 4
