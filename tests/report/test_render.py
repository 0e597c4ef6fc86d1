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
