"""The report's text: what its captions say the numbers are."""

from pathlib import Path

from snnlth.report.collect import RunRecord
from snnlth.report.plots import search_time
from snnlth.report.render import CAPTIONS, build_blocks


def _unfinished_run() -> RunRecord:
    config = {"kind": "search", "model": {"model": "convnet", "timesteps": 5}, "data": {"dataset": "fmnist"},
              "train": {"seed": 0, "epochs": 2}, "search": {"method": "imp", "early_time": "off"}}
    levels = [{"round": k, "sparsity_all": s, "sparsity_prunable": s, "test_accuracy": 80.0, "final": True,
               "search_seconds": t, "timesteps": 5} for k, (s, t) in enumerate([(0.0, 0.0), (0.2, 30.0)])]
    return RunRecord(Path("/runs/imp"), config, {"levels": levels}, [], missing=["metrics.jsonl"])


def _paragraphs(blocks: list[tuple]) -> list[str]:
    return [b[1] for b in blocks if b[0] == "p"]


def test_search_time_is_described_as_training_plus_selection_with_wall_clock_apart():
    paragraphs = _paragraphs(build_blocks([_unfinished_run()], {}))
    note = next(p for p in paragraphs if p.startswith("Columns:"))
    caption = CAPTIONS["search_time.png"]
    for text in (note, caption):
        assert "wall time of all training" not in text
        assert "training the search needed before that ticket's own training" in text
        assert "mask scoring" in text and "mask distances" in text and "choice of T" in text  # selection work
        assert "search_eval_seconds" in text and "search_wall_seconds" in text  # evaluation and wall clock apart
    assert "– where a level has none (reinit" in note
    title = search_time([_unfinished_run()]).axes[0].get_title()
    assert "training before the ticket + selection (mask scoring" in title and "wall clock apart" in title


def test_incomplete_runs_paragraph_claims_no_nominal_sparsity():
    paragraphs = _paragraphs(build_blocks([_unfinished_run()], {}))
    incomplete = next(p for p in paragraphs if p.startswith("Reported from what is there"))
    assert "nominal" not in incomplete and "exact sparsity" in incomplete
    assert "finished phases" in incomplete and "round stop cut short" in incomplete
    assert "/runs/imp: missing metrics.jsonl" in incomplete


def _ticket_run(exact: bool) -> RunRecord:
    """A finished run with storage and operations: as written now (``exact``) or before exact counts."""
    run = _unfinished_run()
    run.missing = []
    for lv in run.summary["levels"]:
        lv.update(ticket_bytes=1024.0, dense_bytes=4096.0, synops_per_image=2e6, macs_per_image=1e5,
                  energy_uj_per_image=2.26)
        if exact:
            lv.update(energy_model="neurobench-effective-ops", effective_acs_per_image=2e6,
                      effective_macs_per_image=1e5, activation_sparsity=0.9,
                      per_timestep=[{"t": t, "accuracy": 70.0 + t, "firing_rate": 0.1, "effective_acs": 4e5 * t,
                                     "effective_macs": 1e5} for t in range(1, 6)])
    return run


def test_the_ticket_table_states_its_energy_model():
    paragraphs = _paragraphs(build_blocks([_ticket_run(True)], {}))
    note = next(p for p in paragraphs if p.startswith("Ticket size"))
    assert "effective ACs / MACs as NeuroBench 2.3 counts them" in note
    assert "0.9 pJ per AC, 4.6 pJ per MAC, 45 nm (Horowitz ISSCC 2014)" in note
    assert "≈: the uniform-activity estimate" in note and "NeuroBench's footprint" in note


def test_new_runs_show_the_figures_per_timestep_and_old_runs_the_estimate_marked(tmp_path):
    from snnlth.report.render import write_report

    write_report([_ticket_run(True)], tmp_path / "new")
    new = (tmp_path / "new" / "report.md").read_text()
    for name in ("accuracy_vs_timesteps.png", "effective_acs_vs_timesteps.png"):
        assert f"]({name})" in new and (tmp_path / "new" / name).stat().st_size > 0
    assert "| 2.000 M | 0.100 M | 0.900 | 2.260 µJ |" in new
    write_report([_ticket_run(False)], tmp_path / "old")  # written before exact counts: still renders
    old = (tmp_path / "old" / "report.md").read_text()
    assert "| ≈ 2.000 M | ≈ 0.100 M | – | ≈ 2.260 µJ |" in old
    assert "](accuracy_vs_timesteps.png)" not in old and "](effective_acs_vs_timesteps.png)" not in old
    assert "(Test accuracy of each final ticket read out after t timesteps, mean over seeds: no data in these runs.)" \
        in old
