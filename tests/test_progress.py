"""Progress bars only on a terminal: a log file or a batch job's output gets the epoch lines and events alone."""

import io
import subprocess
import sys

import pytest
import torch

from snnlth.engine.loop import BatchInfo
from snnlth.progress import Progress

ROW = {"epoch": 1, "timesteps": 4, "lr": 0.1, "train_loss": 0.5, "train_accuracy": 80.0, "test_accuracy": 75.0,
       "images_per_second": 1000.0, "train_seconds": 1.5}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class NoIsatty:
    """A stream with write and flush only (some wrappers of sys.stderr have no isatty)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, s: str) -> int:
        self.parts.append(s)
        return len(s)

    def flush(self) -> None:
        pass


def _feed(progress: Progress, batches: int = 4) -> None:
    for b in range(1, batches + 1):
        info = BatchInfo(epoch=0, epochs=1, batch=b, batches=batches, loss_sum=torch.tensor(0.7 * 10 * b),
                         correct=torch.tensor(6 * b), seen=10 * b, seconds=0.6 * b)
        progress.on_batch(info, label="round 0")
    progress.on_epoch(ROW)
    progress.on_event("pruned to 20%")
    progress.close()


def _run(monkeypatch, stderr) -> str:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", stderr)
    _feed(Progress())
    return out.getvalue()


@pytest.mark.parametrize("stream", [io.StringIO, NoIsatty])
def test_no_bar_when_stderr_is_not_a_terminal(monkeypatch, stream):
    err = stream()
    out = _run(monkeypatch, err)
    assert (err.getvalue() if isinstance(err, io.StringIO) else "".join(err.parts)) == ""
    assert "\r" not in out
    assert "epoch   1  T=4" in out and "test acc  75.00%" in out and "-- pruned to 20%" in out


def test_bar_on_a_terminal(monkeypatch):
    err = Terminal()
    out = _run(monkeypatch, err)
    assert "\r" in err.getvalue() and "round 0 epoch 1/1" in err.getvalue()
    assert "epoch   1  T=4" in out and "\r" not in out


def test_disabled_draws_nothing_even_on_a_terminal(monkeypatch):
    err, out = Terminal(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    _feed(Progress(enabled=False))
    assert err.getvalue() == "" and "epoch   1  T=4" in out.getvalue()


def test_a_redirected_cli_run_writes_no_frames(fmnist_dir, tmp_path):
    argv = [sys.executable, "-m", "snnlth", "train", "--model", "lenet300", "--epochs", "1", "--train-subset", "200",
            "--test-subset", "100", "--data-dir", str(fmnist_dir), "--out", str(tmp_path / "run")]
    with (tmp_path / "err.log").open("w") as err, (tmp_path / "out.log").open("w") as out:
        proc = subprocess.run(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, timeout=300)
    stderr = (tmp_path / "err.log").read_bytes()  # bytes: reading text would turn "\r" into "\n"
    assert proc.returncode == 0, stderr
    assert b"\r" not in stderr
    stdout = (tmp_path / "out.log").read_bytes()
    assert b"epoch   1" in stdout and b"test accuracy" in stdout and b"\r" not in stdout
