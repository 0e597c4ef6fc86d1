"""`snnlth sweep`: a queue of content-named runs over workers; finished runs skipped, crashed ones retried once,
one report per model and dataset; --print-commands for a cluster scheduler."""

import os
import subprocess
import sys

import pytest

from snnlth.errors import ConfigError
from snnlth.sweep import Grid, load_grid, make_jobs
from tests.helpers import make_fmnist

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
FLAGS = "--model lenet300 --timesteps 3 --epochs 2 --rounds 1 --batch-size 50 --device cpu"


def _sweep(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "snnlth", "sweep", *args], env={**ENV, **(env or {})},
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def test_two_seeds_two_methods_on_two_workers_then_a_rerun_does_nothing(tmp_path):
    data = make_fmnist(tmp_path / "fmnist")
    grid = tmp_path / "grid.toml"
    grid.write_text(f'[sweep]\nseeds = [0, 1]\nmethods = ["imp", "eb"]\nworkers = 2\nruns_root = "{tmp_path}/runs"\n'
                    f'flags = "{FLAGS} --data-dir {data} --eb-window 2"\n')
    # every IMP run is killed once, writing its dense round's 2nd checkpoint (a worker crash): retried, it resumes
    # from the 1st and finishes
    first = _sweep(str(grid), env={"SNNLTH_FAULT_AT": "write:round_00.ckpt.pt@2"})
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("crashed imp") == 2 and first.stdout.count("retrying") == 2
    assert "0 done before, 4 finished, 0 failed" in first.stdout
    summaries = sorted((tmp_path / "runs").glob("*/seed_*/summary.json"))
    assert len(summaries) == 4
    report = tmp_path / "runs" / "reports" / "lenet300-fmnist"
    assert (report / "report.md").exists() and "EB" in (report / "report.md").read_text()
    stamps = [p.stat().st_mtime_ns for p in summaries]
    again = _sweep(str(grid))
    assert again.returncode == 0 and "4 finished before, 0 to run" in again.stdout
    assert "start" not in again.stdout and [p.stat().st_mtime_ns for p in summaries] == stamps


def test_a_run_failing_twice_is_reported_and_the_sweep_exits_1(tmp_path):
    data = make_fmnist(tmp_path / "fmnist")
    res = _sweep("--flags", f"{FLAGS} --data-dir {data}", "--runs-root", str(tmp_path / "runs"),
                 env={"SNNLTH_FAULT_AT": "epoch:round_00"})  # killed at every attempt
    assert res.returncode == 1 and "giving up" in res.stdout and "0 finished, 1 failed" in res.stdout
    assert "failed: imp seed 0 (exit -9" in res.stdout


def test_print_commands_lists_the_unfinished_runs_as_search_commands(tmp_path, capsys):
    from snnlth.cli import main

    code = main(["sweep", "--seeds", "0", "1", "--methods", "imp", "--override", "", "--override",
                 "--early-time auto --et-warmup-epochs 1", "--flags", FLAGS, "--runs-root", str(tmp_path),
                 "--print-commands"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 4 and all(x.startswith("snnlth search ") for x in lines)
    assert sum("--early-time auto" in x for x in lines) == 2 and not list(tmp_path.iterdir())
    # presets keep their own method unless --methods is given
    main(["sweep", "--presets", "vgg16-cifar10-eb", "vgg16-cifar10-imp", "--runs-root", str(tmp_path),
          "--print-commands"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and not any("--method" in x for x in lines) and "--preset vgg16-cifar10-eb" in lines[0]


def test_grid_errors_are_one_line(tmp_path):
    bad = tmp_path / "g.toml"
    bad.write_text("[sweep]\nseed = [0]\n")
    with pytest.raises(ConfigError, match="unknown \\[sweep\\] key 'seed' \\(did you mean 'seeds'\\?\\)"):
        load_grid(bad)
    with pytest.raises(ConfigError, match="--early-time works with --method "):
        make_jobs(Grid(methods=("random",), flags="--early-time auto --from x"))
    with pytest.raises(ConfigError, match="seeds is empty"):
        Grid(seeds=())
    assert load_grid(None, seeds=[3], methods=None).seeds == (3,)
