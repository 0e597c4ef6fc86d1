"""A search killed by SIGKILL in the middle of round 1 and resumed ends exactly like an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

from snnlth import masks as M
from snnlth.rundir.store import load_blob

TIMING = {"train_seconds", "eval_seconds", "wall_seconds", "eb_seconds", "images_per_second", "search_seconds",
          "search_eval_seconds", "search_wall_seconds", "search_seconds_total", "retrain_seconds_total",
          "total_seconds", "finished_at"}


def _cmd(data_dir, out):
    return [sys.executable, "-m", "snnlth", "search", "--data-dir", str(data_dir), "--out", str(out),
            "--model", "convnet", "--timesteps", "2", "--epochs", "4", "--rounds", "2", "--batch-size", "25",
            "--rewind-epoch", "1", "--no-progress"]


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def test_sigkill_mid_round_then_resume_equals_uninterrupted(fmnist_dir, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"
    subprocess.run(_cmd(fmnist_dir, full), check=True, env=env, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(fmnist_dir, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "phases" / "round_01.ckpt.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert ckpt.exists(), "the search ended before round 1 was checkpointed"
    assert not (killed / "phases" / "round_01.pt").exists(), "killed too late: round 1 had already finished"
    assert not (killed / "summary.json").exists()

    resumed = subprocess.run([sys.executable, "-m", "snnlth", "search", "--resume", str(killed), "--no-progress"],
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((full / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert _strip(a) == _strip(b)
    rows = lambda d: [_strip(json.loads(x)) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows(full) == rows(killed)
    for k in range(3):
        ma = M.unpack(load_blob(full / "masks" / f"round_{k:02d}.pt"))
        mb = M.unpack(load_blob(killed / "masks" / f"round_{k:02d}.pt"))
        assert M.hamming(ma, mb) == 0.0
    assert not list((killed / "phases").glob("*.ckpt.pt"))
