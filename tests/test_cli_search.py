import json

import pytest

from snnlth.cli import main
from tests.helpers import one_line_error

TINY = ["--model", "lenet300", "--timesteps", "3", "--epochs", "2", "--batch-size", "50", "--rounds", "1",
        "--no-progress"]


def _err(capsys):
    return one_line_error(capsys)


@pytest.mark.parametrize("argv,match", [
    (["--prune-rate", "1.0"], "--prune-rate must be in (0, 1)"),
    (["--prune-rate", "0"], "--prune-rate must be in (0, 1)"),
    (["--method", "eb", "--target-sparsity", "0.5", "1.2"], "--target-sparsity must be one or more values in (0, 1)"),
    (["--rounds", "0"], "--rounds must be >= 1"),
    (["--rewind-epoch", "2"], "--rewind-epoch must be < --epochs (2)"),
    (["--early-time", "3"], "--early-time must be in [1, --timesteps) = [1, 3)"),
    (["--early-time", "0"], "--early-time must be in [1, --timesteps)"),
    (["--early-time", "soon"], "--early-time must be off, auto or a number"),
    (["--method", "reinit"], "--method reinit needs --from RUN_DIR"),
    (["--method", "random", "--early-time", "2"], "--early-time combines with imp and eb only"),
    (["--method", "tpe"], "--method must be one of imp, eb, random, reinit"),
    (["--retrain-at", "1.5"], "--retrain-at takes last, all"),
])
def test_bad_search_input(argv, match, capsys, fmnist_dir, tmp_path):
    rc = main(["search", "--data-dir", str(fmnist_dir), "--out", str(tmp_path / "r"), *TINY, *argv])
    assert rc == 2 and match in _err(capsys)
    assert not (tmp_path / "r").exists()


def test_from_must_be_a_finished_run_of_the_same_model(capsys, fmnist_dir, tmp_path):
    base = ["search", "--data-dir", str(fmnist_dir), *TINY]
    (tmp_path / "empty").mkdir()
    assert main([*base, "--out", str(tmp_path / "a"), "--method", "reinit", "--from", str(tmp_path / "empty")]) == 2
    assert "is not a finished search run" in _err(capsys)
    assert main([*base, "--out", str(tmp_path / "src")]) == 0
    capsys.readouterr()
    argv = ["search", "--data-dir", str(fmnist_dir), *TINY, "--model", "convnet", "--out", str(tmp_path / "b"),
            "--method", "reinit", "--from", str(tmp_path / "src")]
    assert main(argv) == 2 and "has masks for model lenet300 on fmnist, not convnet" in _err(capsys)
    assert not (tmp_path / "b").exists()
    src_before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "src").rglob("*")}
    assert main([*base, "--out", str(tmp_path / "c"), "--method", "reinit", "--from", str(tmp_path / "src")]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "src").rglob("*")} == src_before


def test_resume_with_different_config_is_refused(capsys, fmnist_dir, tmp_path):
    out = tmp_path / "r"
    assert main(["search", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["search", "--resume", str(out), "--prune-rate", "0.5", "--no-progress"]) == 2
    assert "holds a different run" in _err(capsys)
    assert main(["search", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY, "--timesteps", "4"]) == 2
    assert "model.timesteps" in _err(capsys)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(["search", "--resume", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "no config.json there" in _err(capsys)


def test_summary_contract_and_table(capsys, fmnist_dir, tmp_path):
    out = tmp_path / "r"
    assert main(["search", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY, "--early-time", "2"]) == 0
    printed = capsys.readouterr().out
    assert "imp + Early-Time (T_early=2)" in printed and "summary:" in printed
    s = json.loads((out / "summary.json").read_text())
    for key in ("method", "timesteps", "seed", "early_time", "eb", "levels", "search_seconds_total", "total_seconds"):
        assert key in s
    for lv in s["levels"]:
        assert set(lv) >= {"round", "sparsity_prunable", "sparsity_all", "timesteps", "test_accuracy",
                           "best_test_accuracy", "train_seconds", "search_seconds", "final"}
        assert 0 <= lv["sparsity_all"] <= lv["sparsity_prunable"] < 1
    assert s["early_time"]["mode"] == "forced" and s["early_time"]["t_early"] == 2
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "search" and cfg["search"]["early_time"] == "2"
