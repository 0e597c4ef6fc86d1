"""`snnlth sweep --executor submitit-local|slurm`: one submitit job per run, requeued on preemption (it resumes),
failed runs retried a bounded number of times, `--status` from the run dirs and job records."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from snnlth.cluster import (
    ClusterOptions,
    SearchTask,
    executor_parameters,
    make_executor,
    read_record,
    run_cluster,
    search_command,
    update_record,
)
from snnlth.errors import ConfigError
from snnlth.sweep import Grid, make_jobs
from tests.helpers import make_fmnist

pytest.importorskip("submitit")

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
FLAGS = "--model lenet300 --timesteps 3 --epochs 2 --rounds 1 --batch-size 50 --device cpu"


def _sweep(*args, env=None):
    return subprocess.run([sys.executable, "-m", "snnlth", "sweep", *args], env={**ENV, **(env or {})},
                          capture_output=True, text=True, timeout=600)


def _levels(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    return [(lv["round"], lv["test_accuracy"], lv["sparsity_prunable"]) for lv in summary["levels"]]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_fmnist(tmp_path_factory.mktemp("fmnist"))


def test_submitit_local_grid_writes_the_same_summaries_as_the_local_queue(tmp_path, data):
    runs = {}
    for executor in ("local", "submitit-local"):
        root = tmp_path / executor
        res = _sweep("--seeds", "0", "1", "--flags", f"{FLAGS} --data-dir {data}", "--runs-root", str(root),
                     "--executor", executor)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "0 done before, 2 finished, 0 failed" in res.stdout
        assert (root / "reports" / "lenet300-fmnist" / "report.md").exists()
        runs[executor] = {p.parent.name: _levels(p.parent) for p in root.glob("*/seed_*/summary.json")}
    assert sorted(runs["local"]) == ["seed_0", "seed_1"] and runs["submitit-local"] == runs["local"]
    assert "as submitit-local jobs" in res.stdout and "submitted imp seed 1 (job " in res.stdout
    assert read_record(next((tmp_path / "submitit-local").glob("*/seed_0")))["state"] == "finished"
    again = _sweep("--seeds", "0", "1", "--flags", f"{FLAGS} --data-dir {data}", "--runs-root",
                   str(tmp_path / "submitit-local"), "--executor", "submitit-local")
    assert again.returncode == 0 and "2 finished before, 0 to run" in again.stdout and "submitted" not in again.stdout


def test_a_preempted_job_is_requeued_and_ends_equal_to_an_uninterrupted_run(tmp_path, data):
    flags = f"{FLAGS.replace('--epochs 2', '--epochs 40')} --data-dir {data}"
    (job,) = make_jobs(Grid(flags=flags, runs_root=str(tmp_path / "a")))
    (ref,) = make_jobs(Grid(flags=flags, runs_root=str(tmp_path / "b")))
    executor = make_executor(ClusterOptions("submitit-local"), tmp_path / "jobs")
    handle = executor.submit(SearchTask(job.argv, job.run_dir, env={"OMP_NUM_THREADS": "1"}))
    metrics = job.run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3) and time.time() < deadline:
        time.sleep(0.01)
    assert not (job.run_dir / "summary.json").exists()  # mid-run
    # what SLURM sends the job before preempting it or at its time limit (submitit's LocalExecutor, at its own)
    os.kill(read_record(job.run_dir)["pid"], signal.SIGUSR2)
    assert handle.result() == 0
    record = read_record(job.run_dir)
    assert record["requeues"] == 1 and record["state"] == "finished"
    log = (job.run_dir.parent / "seed_0.sweep.log").read_text()
    assert "Requeued job" in handle.stdout() and "snnlth: interrupted" in log
    assert log.count("round_00      epoch   1 ") == 1  # resumed, not started again
    assert subprocess.run(search_command(ref.argv), env=ENV, capture_output=True).returncode == 0
    assert _levels(job.run_dir) == _levels(ref.run_dir)


def test_a_crashed_run_is_retried_once_and_resumes_one_always_crashing_is_reported_with_status(tmp_path, data):
    args = ["--flags", f"{FLAGS} --data-dir {data}", "--executor", "submitit-local"]
    once = _sweep(*args, "--runs-root", str(tmp_path / "once"), env={"SNNLTH_FAULT_AT": "write:round_00.ckpt.pt@2"})
    assert once.returncode == 0 and "crashed imp seed 0 (exit -9); retrying" in once.stdout, once.stdout + once.stderr
    assert "0 done before, 1 finished, 0 failed" in once.stdout
    root = str(tmp_path / "always")
    res = _sweep(*args, "--runs-root", root, env={"SNNLTH_FAULT_AT": "epoch:round_00"})  # killed at every attempt
    assert res.returncode == 1 and res.stdout.count("retrying") == 1, res.stdout + res.stderr
    assert "0 finished, 1 failed" in res.stdout and "failed: imp seed 0 (exit -9" in res.stdout
    (run_dir,) = (tmp_path / "always").glob("*/seed_0")
    assert read_record(run_dir)["attempt"] == 2 and read_record(run_dir)["state"] == "failed"
    status = _sweep(*args, "--runs-root", root, "--status")
    assert status.returncode == 0 and status.stdout.startswith("failed    imp seed 0: "), status.stdout
    last = [x for x in (run_dir.parent / "seed_0.sweep.log").read_text().splitlines() if x.strip()][-1].strip()
    assert f"(exit -9: {last})" in status.stdout


def test_bad_input_exit_2_is_not_retried(tmp_path):
    (job,) = make_jobs(Grid(flags=FLAGS, runs_root=str(tmp_path)))
    bad = job.__class__(("--no-such-flag",), job.run_dir, "bad")
    lines = []
    (result,) = run_cluster([bad], ClusterOptions("submitit-local", attempts=3), tmp_path / "jobs", lines.append)
    assert result[1:4] == ("failed", 1, 2) and not any("retrying" in x for x in lines)


def test_status_shows_pending_running_finished_and_failed(tmp_path, capsys):
    from snnlth.cli import main

    jobs = make_jobs(Grid(seeds=(0, 1, 2, 3), flags=FLAGS, runs_root=str(tmp_path)))
    finished, running, failed = jobs[0].run_dir, jobs[1].run_dir, jobs[3].run_dir
    finished.mkdir(parents=True)
    (finished / "config.json").write_text("{}")
    (finished / "summary.json").write_text("{}")
    update_record(running, state="running", job_id="77")
    update_record(failed, state="failed", returncode=1, job_id="78")
    (failed.parent / f"{failed.name}.sweep.log").write_text("epoch 1\nRuntimeError: out of memory\n\n")
    assert main(["sweep", "--seeds", "0", "1", "2", "3", "--flags", FLAGS, "--runs-root", str(tmp_path),
                 "--status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [x.split()[0] for x in out] == ["finished", "running", "pending", "failed"]
    assert out[1].endswith("(job 77)") and out[3].endswith("(exit 1: RuntimeError: out of memory)")


def test_cluster_flags_parse_and_map_to_submitit(tmp_path, capsys, monkeypatch):
    from snnlth.cli import build_parser, main

    args = build_parser().parse_args(["sweep", "--executor", "slurm", "--slurm-partition", "gpu", "--slurm-time",
                                      "90", "--slurm-gpus-per-job", "2", "--slurm-cpus-per-job", "8",
                                      "--slurm-array-parallelism", "4", "--slurm-option", "account=proj",
                                      "--slurm-option", "exclusive-nodes=yes"])
    opts = ClusterOptions(args.executor, args.slurm_partition, args.slurm_time, args.slurm_gpus_per_job,
                          args.slurm_cpus_per_job, args.slurm_array_parallelism, tuple(args.slurm_options))
    assert executor_parameters(opts) == {
        "timeout_min": 90, "gpus_per_node": 2, "tasks_per_node": 1, "slurm_partition": "gpu", "cpus_per_task": 8,
        "slurm_array_parallelism": 4, "slurm_account": "proj",
        "slurm_additional_parameters": {"exclusive-nodes": "yes"}}
    assert search_command(("--seed", "0"), 2)[1:6] == ["-m", "torch.distributed.run", "--standalone",
                                                       "--nproc_per_node", "2"]
    assert search_command(("--seed", "0"), 1)[1:4] == ["-m", "snnlth", "search"]
    assert main(["sweep", "--flags", FLAGS, "--runs-root", str(tmp_path), "--slurm-option", "account"]) == 2
    err = capsys.readouterr().err
    assert "--slurm-option 'account' is not KEY=VALUE" in err and err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "submitit", None)  # not installed
    with pytest.raises(ConfigError, match=r"pip install 'snnlth\[cluster\]'"):
        make_executor(ClusterOptions("slurm"), tmp_path)
    assert not list(tmp_path.iterdir())
