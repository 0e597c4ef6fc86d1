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
    (["--method", "eb", "--target-sparsity", "0.5", "1.2"], "--target-sparsity takes imp or sparsities in (0, 1)"),
    (["--method", "eb", "--target-sparsity", "IMP"], "--target-sparsity takes imp or sparsities in (0, 1)"),
    (["--rounds", "0"], "--rounds must be >= 1"),
    (["--rewind-epoch", "2"], "--rewind-epoch must be < --epochs (2)"),
    (["--early-time", "3"], "--early-time must be in [1, --timesteps) = [1, 3)"),
    (["--early-time", "0"], "--early-time must be in [1, --timesteps)"),
    (["--early-time", "soon"], "--early-time must be off, auto or a number"),
    (["--method", "reinit"], "--method reinit needs --from RUN_DIR"),
    (["--method", "random", "--early-time", "2"],
     "--early-time works with --method eb or gmp or imp or lrr only"),
    (["--method", "reinit", "--early-time", "2", "--from", "x"],
     "--early-time works with --method eb or gmp or imp or lrr only"),
    (["--method", "imp", "--from", "x"], "--method imp takes no --from"),
    (["--method", "tpe"],
     "unknown method 'tpe'; choose one of: eb, gmp, imp, lrr, oneshot, random, reinit, snip, transfer"),
    (["--method", "rinit"], "unknown method 'rinit' (did you mean 'reinit'?)"),
    (["--retrain-at", "1.5"], "--retrain-at takes last, all"),
    (["--method", "reinit", "--from", "x", "--retrain-at", "all"],
     "--retrain-at is Early-Time's and round stop's; reinit takes --reinit-levels (got --retrain-at all)"),
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


def test_nan_weights_stop_pruning_with_one_line(capsys, fmnist_dir, tmp_path):
    """A round that ended with NaN weights (a diverged run) is never pruned: one line names tensor and round."""
    import torch

    from snnlth.rundir.store import load_blob, save_blob

    out = tmp_path / "r"
    argv = ["search", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY]
    assert main(argv) == 0
    for name in ("summary.json", "masks/round_01.pt", "phases/round_01.pt"):
        (out / name).unlink()
    blob = load_blob(out / "phases" / "round_00.pt")
    blob["model"]["fc2.weight"][3, 4] = torch.nan
    save_blob(out / "phases" / "round_00.pt", blob)
    capsys.readouterr()
    assert main(argv) == 1  # a numerical fault while running: exit 1
    line = _err(capsys)
    assert "pruning for round 1 stopped: after round 0 fc2.weight holds 1 NaN/inf value" in line
    assert not (out / "masks" / "round_01.pt").exists() and not (out / "summary.json").exists()


@pytest.fixture(scope="module")
def imp_source(tmp_path_factory):
    from tests.helpers import make_fmnist

    root = tmp_path_factory.mktemp("src")
    data = make_fmnist(root / "data")
    assert main(["search", "--data-dir", str(data), "--out", str(root / "imp"), *TINY, "--rounds", "2"]) == 0
    return data, root / "imp"


@pytest.mark.parametrize("method", ["random", "reinit"])
@pytest.mark.parametrize("flag,value", [
    ("--timesteps", "2"), ("--epochs", "3"), ("--rewind-epoch", "1"), ("--train-subset", "100"),
    ("--test-subset", "50"), ("--resize", "32"), ("--prune-rate", "0.5"), ("--scope", "local"),
    ("--lr", "0.3"), ("--batch-size", "40"), ("--exclude", "fc3"), ("--bn-time", "pooled"),
])
def test_baseline_refuses_other_conditions_than_its_source(method, flag, value, imp_source, capsys, tmp_path):
    data, src = imp_source
    capsys.readouterr()
    out = tmp_path / "b"
    argv = ["search", "--data-dir", str(data), "--out", str(out), *TINY, "--rounds", "2", "--method", method,
            "--from", str(src), flag, value]
    assert main(argv) == 2
    line = _err(capsys)
    assert f"--from {src} was trained with {flag} " in line and f"use {flag} " in line
    assert not out.exists()


def test_resume_of_a_run_written_before_bn_time_existed(capsys, fmnist_dir, tmp_path):
    """config.json of a 0.1 run has no bn_time (BN was pooled then): --resume keeps its identity."""
    out = tmp_path / "old"
    assert main(["search", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY, "--bn-time", "pooled"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    del cfg["model"]["bn_time"], cfg["label"], cfg["base_label"]
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "summary.json").unlink()
    capsys.readouterr()
    assert main(["search", "--resume", str(out), "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text())["config"]["model"]["bn_time"] == "pooled"


def test_resume_of_a_reinit_run_written_before_reinit_levels_existed(imp_source, capsys, tmp_path):
    """A 0.3 reinit run named its levels search.retrain_at (in config.json and its identity): --resume reads them as
    --reinit-levels, keeps the run's identity and finishes it; its report identity is today's."""
    from snnlth.report.series import identity_of

    data, src = imp_source
    out = tmp_path / "old"
    argv = ["search", "--data-dir", str(data), "--out", str(out), *TINY, "--rounds", "2", "--method", "reinit",
            "--from", str(src), "--reinit-levels", "all"]
    assert main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())
    for part in (cfg["search"], cfg["semantic"]["search"]):  # as 0.3 wrote it
        part["retrain_at"] = part.pop("reinit_levels")
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "summary.json").unlink()
    capsys.readouterr()
    assert main(["search", "--resume", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [lv["round"] for lv in summary["levels"]] == [0, 1, 2]  # all of them, as asked in 0.3
    assert identity_of(cfg)["search.reinit_levels"] == ["all"] and "search.retrain_at" not in identity_of(cfg)
    assert main(argv) == 0 and "already" in capsys.readouterr().out  # today's command names the same run


def test_resume_of_a_sync_bn_run_written_before_sync_bn_named_runs():
    from snnlth.config_io import legacy_semantic

    saved = {"kind": "search", "semantic": {"train": {"epochs": 2}}, "train": {"sync_bn": True}}
    assert legacy_semantic(saved) == {"train": {"epochs": 2, "sync_bn": True}}
    assert legacy_semantic({"semantic": {"train": {"epochs": 2}}, "train": {"sync_bn": False}}) == {
        "train": {"epochs": 2}}
