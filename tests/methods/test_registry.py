"""The method seam: a toy method written in this file alone works with the CLI, resume, the report and export."""

import json

import pytest

from snnlth import masks as M
from snnlth.cli import main
from snnlth.errors import ConfigError
from snnlth.methods.kit import MethodKit
from snnlth.methods.registry import METHODS, MethodResult, MethodSpec, register_method
from tests.helpers import search_cfg


def run_one_shot(kit: MethodKit, source) -> MethodResult:
    """Toy: train dense, prune once by magnitude at --prune-rate, retrain the ticket from init."""
    init = kit.init()
    dense = kit.train("dense", init, None, stream=0, round=0)
    masks = kit.masks("one_shot", lambda: M.magnitude_prune(dense.weights(), kit.sizes.dense(),
                                                            kit.cfg.search.prune_rate))
    ticket = kit.train("ticket", init, masks, stream=1, round=1)
    return MethodResult([dense.level("dense", kit.sizes.dense(), round=0),
                         ticket.level("one_shot", masks, round=1, spent=dense.spent)],
                        extra={"one_shot_rate": kit.cfg.search.prune_rate})


@pytest.fixture
def toy():
    spec = register_method(MethodSpec("pruneonce", "Prune-once", run_one_shot, "toy: prune once after dense training",
                                      fields=("prune_rate",)))
    yield spec
    METHODS.unregister("pruneonce")


def _run_args(data, out):
    return ["search", "--data-dir", str(data), "--out", str(out), "--method", "pruneonce", "--model", "lenet300",
            "--timesteps", "2", "--epochs", "2", "--batch-size", "50", "--prune-rate", "0.6", "--no-progress"]


def test_toy_method_through_cli_report_and_export(toy, fmnist_dir, tmp_path, capsys):
    assert main(["methods"]) == 0
    listed = capsys.readouterr().out
    assert "pruneonce" in listed and "toy: prune once" in listed and "imp" in listed
    out = tmp_path / "r"
    assert main(_run_args(fmnist_dir, out)) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "pruneonce" and s["label"] == "Prune-once" and s["one_shot_rate"] == 0.6
    assert [round(lv["sparsity_prunable"], 6) for lv in s["levels"]] == [0.0, 0.6]
    assert s["levels"][1]["search_seconds"] == pytest.approx(
        sum(json.loads(x)["train_seconds"] for x in (out / "metrics.jsonl").read_text().splitlines()
            if json.loads(x)["phase"] == "dense"))
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert "Prune-once" in capsys.readouterr().out and "Prune-once" in (tmp_path / "rep" / "report.md").read_text()
    assert main(["export", str(out), "--out", str(tmp_path / "t.safetensors")]) == 0
    # --from is refused: the toy declares no source
    assert main([*_run_args(fmnist_dir, tmp_path / "b"), "--from", str(out)]) == 2
    assert "--method pruneonce takes no --from" in capsys.readouterr().err


def test_toy_method_resumes_after_a_crash_exactly(toy, fmnist_dir, tmp_path):
    from snnlth.api import search
    from snnlth.methods.phases import Callbacks

    cfg = search_cfg(fmnist_dir, method="pruneonce", prune_rate=0.6, epochs=3)
    full = search(cfg, out=tmp_path / "full").summary

    def crash(row):
        if row["phase"] == "ticket" and row["epoch"] == 2:
            raise KeyboardInterrupt  # after the epoch's checkpoint and metrics were written

    with pytest.raises(KeyboardInterrupt):
        search(cfg, out=tmp_path / "crashed", callbacks=Callbacks(on_epoch=crash))
    resumed = search(cfg, out=tmp_path / "crashed")
    assert resumed.status == "resumed"
    keys = ("test_accuracy", "pruned_weights", "sparsity_all", "best_test_accuracy")
    assert [[lv[k] for k in keys] for lv in resumed.summary["levels"]] == [[lv[k] for k in keys]
                                                                          for lv in full["levels"]]


def test_registry_rejects_unknown_fields_and_sources():
    with pytest.raises(ValueError, match="declares unknown"):
        MethodSpec("x", "X", run_one_shot, "x", fields=("no_such_field",))
    with pytest.raises(ValueError, match="source must be"):
        MethodSpec("x", "X", run_one_shot, "x", source="maybe")
    with pytest.raises(ConfigError, match="unknown method 'x'"):
        METHODS.get("x")
