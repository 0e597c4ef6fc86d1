"""A search killed by SIGKILL in the middle of its work and resumed ends exactly like an uninterrupted one: IMP in round
1, Early-Bird in its dense run (windows of masks in the checkpoint), IMP + Early-Time (auto) right after T_early was
chosen."""

import json
import os
import signal
import subprocess
import sys
import time

from snnlth import masks as M
from snnlth.rundir.store import load_blob

TIMING = {"train_seconds", "eval_seconds", "wall_seconds", "eb_seconds", "round_stop_seconds", "images_per_second",
          "search_seconds", "search_eval_seconds", "search_wall_seconds", "search_seconds_total",
          "retrain_seconds_total", "total_seconds", "finished_at", "seconds"}


def _cmd(data_dir, out, *extra):
    return [sys.executable, "-m", "snnlth", "search", "--data-dir", str(data_dir), "--out", str(out),
            "--model", "convnet", "--timesteps", "2", "--epochs", "4", "--rounds", "2", "--batch-size", "25",
            "--rewind-epoch", "1", "--no-progress", *extra]


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _kill_when(cmd, marker, not_yet):
    """Start ``cmd``, SIGKILL it as soon as ``marker`` exists; ``not_yet`` must not exist then (killed too late)."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert marker.exists(), f"the search ended before {marker.name} was written"
    assert not not_yet.exists(), f"killed too late: {not_yet.name} already exists"


def _same_results(full, killed, mask_keys):
    resumed = subprocess.run([sys.executable, "-m", "snnlth", "search", "--resume", str(killed), "--no-progress"],
                             env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((full / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert _strip(a) == _strip(b)
    rows = lambda d: [_strip(json.loads(x)) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows(full) == rows(killed)
    for key in mask_keys:
        ma = M.unpack(load_blob(full / "masks" / f"{key}.pt"))
        mb = M.unpack(load_blob(killed / "masks" / f"{key}.pt"))
        assert M.hamming(ma, mb) == 0.0
    assert not list((killed / "phases").glob("*.ckpt.pt"))


def test_sigkill_mid_round_then_resume_equals_uninterrupted(fmnist_dir, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_cmd(fmnist_dir, full), check=True, env=ENV, capture_output=True, timeout=600)
    _kill_when(_cmd(fmnist_dir, killed), killed / "phases" / "round_01.ckpt.pt", killed / "phases" / "round_01.pt")
    assert not (killed / "summary.json").exists()
    _same_results(full, killed, [f"round_{k:02d}" for k in range(3)])


def test_sigkill_early_bird_mid_dense_run_then_resume(fmnist_dir, tmp_path):
    extra = ["--model", "lenet300", "--method", "eb", "--target-sparsity", "0.3", "0.6", "--eb-window", "3",
             "--eb-threshold", "0.001", "--epochs", "5"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_cmd(fmnist_dir, full, *extra), check=True, env=ENV, capture_output=True, timeout=600)
    s = json.loads((full / "summary.json").read_text())
    assert len([r for r in (full / "metrics.jsonl").read_text().splitlines() if '"eb_search"' in r]) >= 3
    # killed after epoch 3: the checkpoint holds full windows of masks, and at least one more epoch is to come
    marker = killed / "phases" / "eb_search.ckpt.pt"
    proc_cmd = _cmd(fmnist_dir, killed, *extra)
    proc = subprocess.Popen(proc_cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        rows = (killed / "metrics.jsonl").read_text().splitlines() if (killed / "metrics.jsonl").exists() else []
        if sum('"eb_search"' in r for r in rows) >= 3:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert marker.exists() and not (killed / "phases" / "eb_search.pt").exists(), "killed outside the dense run"
    _same_results(full, killed, [f"eb_{i}" for i in range(len(s["eb"]))])


def test_sigkill_right_after_the_early_time_choice_then_resume(fmnist_dir, tmp_path):
    extra = ["--model", "lenet300", "--timesteps", "3", "--early-time", "auto", "--et-warmup-epochs", "1",
             "--et-batch", "50", "--et-threshold", "1.5", "--rewind-epoch", "0"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_cmd(fmnist_dir, full, *extra), check=True, env=ENV, capture_output=True, timeout=600)
    assert json.loads((full / "summary.json").read_text())["early_time"]["t_early"] == 2
    _kill_when(_cmd(fmnist_dir, killed, *extra), killed / "early_time.json", killed / "phases" / "round_00.pt")
    _same_results(full, killed, [f"round_{k:02d}" for k in range(3)])
