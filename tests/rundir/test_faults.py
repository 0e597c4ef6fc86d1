"""Faults while a run writes: a full disk or a denied write, Ctrl-C in the middle of a write."""

import errno
import json
import os
import signal

import pytest

from snnlth.cli import main
from snnlth.errors import StorageError
from snnlth.rundir import atomic
from snnlth.rundir.store import load_blob
from tests.helpers import one_line_error

TINY = ["--model", "lenet300", "--timesteps", "2", "--batch-size", "50", "--no-progress"]


def test_disk_full_keeps_the_previous_checkpoint_and_rerun_resumes(fmnist_dir, tmp_path, monkeypatch, capsys):
    out2 = tmp_path / "run"
    args = ["train", "--data-dir", str(fmnist_dir), "--out", str(out2), *TINY, "--epochs", "3"]
    real_fsync, writes = os.fsync, []

    def full_on_second_checkpoint(fd):
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if ".checkpoint.pt." in name:
            writes.append(name)
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", full_on_second_checkpoint)
    capsys.readouterr()
    assert main(args) == 1
    err = one_line_error(capsys)
    assert f"cannot write {out2 / 'checkpoint.pt'}: No space left on device" in err
    assert "the previous checkpoint.pt is intact" in err and "rerun the same command to resume" in err
    assert load_blob(out2 / "checkpoint.pt")["epoch"] == 1  # the epoch-1 checkpoint, whole
    assert not [p for p in out2.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert main(args) == 0
    rows = [json.loads(line) for line in (out2 / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_permission_denied_is_one_line(tmp_path):
    target = tmp_path / "locked" / "summary.json"
    target.parent.mkdir()
    target.parent.chmod(0o500)
    try:
        if os.access(target.parent, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(StorageError, match=r"cannot write .*summary.json: Permission denied \(no summary.json"):
            atomic.atomic_write_json(target, {"a": 1})
    finally:
        target.parent.chmod(0o700)


def test_ctrl_c_during_a_write_waits_for_the_write(tmp_path, monkeypatch):
    """SIGINT arriving mid-write is held back until the new file is in place, then raised."""
    target = tmp_path / "checkpoint.pt"
    atomic.atomic_write_bytes(target, b"old")
    real_fsync = os.fsync

    def interrupted_fsync(fd):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the write
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"new" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
