import json
import subprocess
import sys

import pytest

from snnlth.cli import main
from tests.helpers import one_line_error

TINY = ["--model", "lenet300", "--timesteps", "2", "--epochs", "1", "--batch-size", "50", "--no-progress"]


def _err(capsys):
    return one_line_error(capsys)


@pytest.mark.parametrize("argv,match", [
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--model", "vgg19"], "unknown model 'vgg19' (did you mean 'vgg16'?)"),
    (["--timesteps", "0"], "--timesteps must be >= 1"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--train-subset", "999999"], "--train-subset 999999 is larger than the 200 training images"),
])
def test_bad_input_one_line_exit_2(argv, match, capsys, fmnist_dir, tmp_path):
    rc = main(["train", "--data-dir", str(fmnist_dir), "--out", str(tmp_path / "r"), *TINY, *argv])
    assert rc == 2 and match in _err(capsys)
    assert not (tmp_path / "r").exists()  # a failed start writes nothing


def test_missing_data_says_how_to_get_it(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("SNNLTH_DATA", raising=False)
    rc = main(["train", "--dataset", "cifar100", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r"), *TINY])
    assert rc == 2 and "cifar100 not found" in _err(capsys)


def test_truncated_file(capsys, fmnist_dir, tmp_path):
    f = fmnist_dir / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:20])
    rc = main(["train", "--data-dir", str(fmnist_dir), "--out", str(tmp_path / "r"), *TINY])
    assert rc == 2 and "t10k-labels-idx1-ubyte.gz is truncated" in _err(capsys)


def test_train_writes_run_and_refuses_a_different_one(capsys, fmnist_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("test_accuracy", "best_test_accuracy", "epochs", "train_seconds", "timesteps", "model", "dataset",
                "num_parameters", "config"):
        assert key in summary
    assert summary["epochs"] == 1 and summary["timesteps"] == 2 and summary["model"] == "lenet300"
    assert summary["config"]["model"]["timesteps"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 1
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()

    rc = main(["train", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY, "--timesteps", "3"])
    assert rc == 2 and "holds a different run" in _err(capsys)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    assert main(["train", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY]) == 0
    assert "already holds this finished run" in capsys.readouterr().out


def test_default_run_dir_and_python_m(fmnist_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "snnlth", "train", "--data-dir", str(fmnist_dir), "--runs-root",
                           str(tmp_path), *TINY, "--epochs", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (run,) = tmp_path.glob("train-lenet300-fmnist-T2-*/seed_0")
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert "test accuracy" in proc.stdout


def test_no_traceback_from_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "snnlth", "train", "--timesteps", "-2", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_an_abbreviated_or_misspelt_flag_is_refused_with_the_closest_one(capsys, tmp_path):
    """argparse would take --timestep for --timesteps and start a run; snnlth wants whole names."""
    for flag, closest in (("--timestep", "--timesteps"), ("--rewind-epochs", "--rewind-epoch")):
        with pytest.raises(SystemExit) as exc:
            main(["search", flag, "3", "--out", str(tmp_path / "r")])
        assert exc.value.code == 2
        assert f"unrecognized arguments: {flag} 3 (did you mean {closest}?)" in _err(capsys)
    assert not (tmp_path / "r").exists()
