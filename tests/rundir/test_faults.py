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
        if ".train.ckpt.pt." in name:
            writes.append(name)
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", full_on_second_checkpoint)
    capsys.readouterr()
    assert main(args) == 1
    err = one_line_error(capsys)
    assert f"cannot write {out2 / 'phases' / 'train.ckpt.pt'}: No space left on device" in err
    assert "the previous train.ckpt.pt is intact" in err and "rerun the same command to resume" in err
    assert load_blob(out2 / "phases" / "train.ckpt.pt")["epoch"] == 1  # the epoch-1 checkpoint, whole
    assert not [p for p in out2.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert main(args) == 0
    rows = [json.loads(line) for line in (out2 / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_permission_denied_is_one_line(tmp_path, monkeypatch):
    """A directory the run may not write into (injected: chmod does not bind root, which CI runs as)."""
    target = tmp_path / "summary.json"

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    with pytest.raises(StorageError, match=r"cannot write .*summary.json: Permission denied \(no summary.json"):
        atomic.atomic_write_json(target, {"a": 1})
    assert not target.exists()


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


def test_ctrl_c_exits_130_and_the_same_command_resumes(fmnist_dir, tmp_path):
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "snnlth", "train", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY,
           "--epochs", "40"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "phases" / "train.ckpt.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().count("\n") == 0 and "rerun the same command to resume" in err and "Traceback" not in err
    done = load_blob(out / "phases" / "train.ckpt.pt")["epoch"]
    assert 1 <= done < 40
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == done


def test_a_second_writer_is_refused_and_a_dead_owners_lock_is_taken_over(tmp_path):
    import subprocess
    import sys

    from snnlth.errors import RunDirError
    from snnlth.rundir.lock import RunLock

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from snnlth.rundir.lock import RunLock; lock = RunLock(sys.argv[1]); lock.acquire(); "
        "print('held', flush=True); time.sleep(60)"), str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"{run} is in use by process {holder.pid} on .*; wait for it"):
            RunLock(run).acquire()
    finally:
        holder.kill()  # SIGKILL: no clean-up, the lock file stays behind
        holder.wait()
    assert (run / ".lock").exists()
    mine = RunLock(run)
    mine.acquire()  # taken over
    assert mine.owner()["pid"] == os.getpid()
    mine.release()


def test_two_processes_on_one_run_directory(fmnist_dir, tmp_path, capsys):
    """The CLI refuses a second writer in one line, exit 2, and writes nothing."""
    from snnlth.rundir.lock import RunLock

    out = tmp_path / "run"
    other = RunLock(out)
    other.acquire()  # another writer (here: this process, through another handle; flock locks are per open file)
    try:
        rc = main(["train", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY, "--epochs", "1"])
        assert rc == 2 and f"is in use by process {os.getpid()}" in one_line_error(capsys)
        assert [p.name for p in out.iterdir()] == [".lock"]
    finally:
        other.release()
    assert main(["train", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY, "--epochs", "1"]) == 0


def test_env_json_keeps_one_entry_per_start(fmnist_dir, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY]
    assert main([*args, "--epochs", "1"]) == 0
    (out / "summary.json").unlink()  # as if it had stopped before the end: the next start resumes it
    assert main([*args, "--epochs", "1"]) == 0
    starts = json.loads((out / "env.json").read_text())["starts"]
    assert len(starts) == 2 and all("torch" in s and "started_at" in s and s["pid"] == os.getpid() for s in starts)


def _nan_at(monkeypatch, epoch: int, batch: int):
    """The training loss of (epoch, batch), both 1-based, becomes NaN; every other loss is the real one."""
    import torch

    from snnlth.engine import loop
    from snnlth.engine.evaluate import LOSSES

    real, calls = LOSSES["ce"], {"n": 0, "epoch": 0}
    real_epoch = loop.train_epoch

    def counting_epoch(*args, **kwargs):
        calls["epoch"] += 1
        calls["n"] = 0
        return real_epoch(*args, **kwargs)

    def loss(logits, y):
        calls["n"] += 1
        out = real(logits, y)
        return out * torch.nan if (calls["epoch"], calls["n"]) == (epoch, batch) else out

    monkeypatch.setitem(LOSSES, "ce", loss)  # the run's --loss (default ce), as the training loop looks it up
    monkeypatch.setattr(loop, "train_epoch", counting_epoch)


def test_a_nan_loss_stops_the_run_in_one_line_naming_epoch_batch_and_checkpoint(fmnist_dir, tmp_path, monkeypatch,
                                                                               capsys):
    out = tmp_path / "run"
    _nan_at(monkeypatch, epoch=2, batch=3)
    rc = main(["train", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY, "--epochs", "3"])
    err = one_line_error(capsys)
    assert rc == 1
    ckpt = out / "phases" / "train.ckpt.pt"
    assert "NaN or inf at epoch 2, batch 3" in err and f"last good checkpoint {ckpt}, epoch 1" in err
    assert load_blob(ckpt)["epoch"] == 1


def test_skip_batch_leaves_out_the_bad_batch_and_counts_it(fmnist_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _nan_at(monkeypatch, epoch=2, batch=3)
    assert main(["train", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY, "--epochs", "3",
                 "--on-nan", "skip-batch"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("skipped_batches") for r in rows] == [None, 1, None]
    assert all(r["train_loss"] == r["train_loss"] for r in rows)  # finite: the NaN never entered the sums


def test_a_nan_in_a_search_names_the_phase(fmnist_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _nan_at(monkeypatch, epoch=3, batch=2)  # the third epoch trained: round 1's first (rounds train 2 epochs each)
    rc = main(["search", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY, "--epochs", "2", "--rounds", "2"])
    err = one_line_error(capsys)
    assert rc == 1 and "phase round_01 (round 1)" in err and "at epoch 1, batch 2" in err, err
    assert "no checkpoint of this phase yet: a rerun starts it again" in err


def test_cuda_out_of_memory_is_one_line_suggesting_a_smaller_batch(fmnist_dir, tmp_path, monkeypatch, capsys):
    import torch

    from snnlth.engine import loop

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")

    monkeypatch.setattr(loop, "train_epoch", oom)
    rc = main(["train", "--data-dir", str(fmnist_dir), "--out", str(tmp_path / "run"), *TINY, "--epochs", "1"])
    err = one_line_error(capsys)
    assert rc == 1 and "GPU ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB)" in err
    assert "smaller --batch-size or --amp" in err


def _rows(run):
    timing = ("train_seconds", "images_per_second", "eval_seconds", "wall_seconds")
    return [{k: v for k, v in json.loads(line).items() if k not in timing}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(fmnist_dir, tmp_path, monkeypatch, capsys):
    import torch

    args = [*TINY, "--data-dir", str(fmnist_dir), "--epochs", "3"]
    clean, hurt = tmp_path / "clean", tmp_path / "hurt"
    assert main(["train", "--out", str(clean), *args]) == 0
    with monkeypatch.context() as m:
        _nan_at(m, epoch=3, batch=1)  # stops after epoch 2: train.ckpt.pt (epoch 2) and its .prev (epoch 1)
        assert main(["train", "--out", str(hurt), *args]) == 1
    assert load_blob(hurt / "phases" / "train.ckpt.pt.prev")["epoch"] == 1
    data = (hurt / "phases" / "train.ckpt.pt").read_bytes()
    (hurt / "phases" / "train.ckpt.pt").write_bytes(data[: len(data) // 2])  # torn by a failing disk
    capsys.readouterr()
    assert main(["train", "--out", str(hurt), *args]) == 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("snnlth: warning: ")
    assert f"{hurt / 'phases' / 'train.ckpt.pt'} is damaged or missing; resuming from the previous checkpoint" in err
    assert "(epoch 1)" in err
    assert _rows(hurt) == _rows(clean)  # epochs 2 and 3 redone: the same numbers as the uninterrupted run
    a, b = load_blob(clean / "phases" / "train.pt")["model"], load_blob(hurt / "phases" / "train.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_both_checkpoints_damaged_is_one_line(tmp_path):
    from snnlth.errors import RunDirError
    from snnlth.rundir.store import RunStore

    store = RunStore(tmp_path / "run")
    store.save_train_checkpoint({"epoch": 1})
    store.save_train_checkpoint({"epoch": 2})
    for name in ("checkpoint.pt", "checkpoint.pt.prev"):
        (store.path / name).write_bytes(b"garbage")
    with pytest.raises(RunDirError, match="checkpoint.pt and the previous checkpoint checkpoint.pt.prev are both "
                                          "damaged; delete both"):
        store.load_train_checkpoint()


def test_ctrl_c_surfacing_as_another_error_still_exits_130(fmnist_dir, tmp_path, monkeypatch, capsys):
    """Ctrl-C inside a library's clean-up (tqdm's lock, as seen in CI) raises another error during its handling."""
    from snnlth.engine import loop

    def interrupted_epoch(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        finally:
            raise AttributeError("type object 'tqdm' has no attribute '_lock'")

    monkeypatch.setattr(loop, "train_epoch", interrupted_epoch)
    rc = main(["train", "--data-dir", str(fmnist_dir), "--out", str(tmp_path / "run"), *TINY, "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 130 and err.startswith("snnlth: interrupted") and "\n" not in err and "Traceback" not in err


def test_a_damaged_summary_is_named_and_rebuilt(fmnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY, "--epochs", "1"]
    assert main(args) == 0
    good = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text('{"test_accuracy": 8')  # torn
    capsys.readouterr()
    assert main(args) == 2
    assert f"{out / 'summary.json'} is damaged (not valid JSON); delete it and rerun" in one_line_error(capsys)
    (out / "summary.json").unlink()
    assert main(args) == 0
    rebuilt = json.loads((out / "summary.json").read_text())
    assert rebuilt["test_accuracy"] == good["test_accuracy"] and rebuilt["epochs"] == 1
