"""Kill at any instant (SNNLTH_FAULT_AT names the instant: snnlth.rundir.faults), rerun the same command, and the run
ends exactly as an uninterrupted one: IMP, IMP + Early-Time (auto), Early-Bird, Early-Bird + Early-Time and IMP +
Early-Time + round stop, GMP and LRR, killed in the middle of a checkpoint write, of pruning, of
the Early-Time choice, of an Early-Bird detection, of a round whose stop rule has seen one mask, of gmp's pruning
run."""

import json
import subprocess
import sys

import pytest

from tests.helpers import make_fmnist
from tests.methods.test_resume import ENV, _same_results

BASE = ["--model", "lenet300", "--timesteps", "3", "--epochs", "3", "--rounds", "2", "--batch-size", "25",
        "--no-progress"]
ET = ["--early-time", "auto", "--et-warmup-epochs", "1", "--et-batch", "50", "--et-threshold", "1.5"]
EB = ["--method", "eb", "--target-sparsity", "0.3", "0.6", "--eb-window", "2", "--eb-threshold", "0.001",
      "--epochs", "4"]
ES = ["--round-stop", "mask", "--round-stop-window", "2", "--round-stop-threshold", "0.99"]  # stop at epoch 2 of 3
GMP = ["--method", "gmp", "--retrain-at", "all"]
LRR = ["--method", "lrr", "--rounds", "4", "--lrr-jump", "2", "--lrr-epochs", "2", "--retrain-at", "all"]
METHODS = {"imp": [], "imp+et": ET, "eb": EB, "eb+et": [*EB, *ET], "imp+et+es": [*ET, *ES], "gmp": GMP,
           "lrr": LRR}
POINTS = [  # (method, the instant of the kill)
    ("imp", "write:round_01.ckpt.pt@2"),   # mid checkpoint write, second epoch of round 1
    ("imp", "masks:round_02"),             # mid pruning for round 2
    ("imp+et", "record:early_time"),       # mid Early-Time choice
    ("imp+et", "write:round_00.pt"),       # mid writing a finished phase
    ("eb", "masks:eb_0"),                  # mid Early-Bird detection
    ("eb", "write:metrics.jsonl@3"),       # mid metrics write
    ("eb+et", "record:early_time"),
    ("eb+et", "write:eb_search.ckpt.pt@2"),
    ("imp+et+es", "write:round_01.ckpt.pt@1"),  # mid round 1, one mask in its round-stop window
    ("gmp", "epoch:gmp_search"),           # end of epoch 1, a level taken in it, before its checkpoint
    ("gmp", "write:gmp_search.ckpt.pt@2"),  # mid the pruning run, its masks changing
    ("lrr", "write:lrr_01.ckpt.pt@1"),     # mid a round retrained from the current weights
]


def _cmd(data_dir, out, method):
    return [sys.executable, "-m", "snnlth", "search", "--data-dir", str(data_dir), "--out", str(out), *BASE,
            *METHODS[method]]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_fmnist(tmp_path_factory.mktemp("data") / "fmnist")  # one for all: the run config names it


@pytest.fixture(scope="module")
def full_runs(tmp_path_factory, data_dir):
    """Uninterrupted runs, one per method, made on first use."""
    made = {}

    def get(method):
        if method not in made:
            out = tmp_path_factory.mktemp("full") / method
            subprocess.run(_cmd(data_dir, out, method), check=True, env=ENV, capture_output=True, timeout=600)
            made[method] = out
        return made[method]

    return get


@pytest.mark.parametrize("method,point", POINTS, ids=[f"{m}-{p}" for m, p in POINTS])
def test_killed_at_a_named_instant_then_rerun_equals_uninterrupted(data_dir, tmp_path, full_runs, method, point):
    full = full_runs(method)
    fmnist_dir = data_dir
    killed = tmp_path / "killed"
    proc = subprocess.run(_cmd(fmnist_dir, killed, method), env={**ENV, "SNNLTH_FAULT_AT": point},
                          capture_output=True, timeout=600)
    assert proc.returncode == -9, f"never reached {point}: {proc.stderr.decode()[-300:]}"
    assert not (killed / "summary.json").exists()
    keys = [p.stem for p in (full / "masks").glob("*.pt")]
    _same_results(full, killed, keys)
    assert json.loads((killed / "env.json").read_text())["starts"][-1]["argv"][-1] == "--no-progress"


def test_a_report_killed_mid_write_is_rewritten_whole(full_runs, tmp_path):
    run, out = full_runs("imp"), tmp_path / "report"
    cmd = [sys.executable, "-m", "snnlth", "report", str(run), "--out", str(out)]
    killed = subprocess.run(cmd, env={**ENV, "SNNLTH_FAULT_AT": "write:report.html"}, capture_output=True, timeout=300)
    assert killed.returncode == -9 and not (out / "report.html").exists()
    subprocess.run(cmd, env=ENV, check=True, capture_output=True, timeout=300)
    html = (out / "report.html").read_text()
    assert html.rstrip().endswith("</html>") and "accuracy" in html.lower()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_damaged_finished_phase_is_recomputed_with_everything_made_after_it(data_dir, full_runs, tmp_path):
    """phases/round_01.pt damaged: it, masks/round_02.pt and phases/round_02.pt (derived from it) are set aside and
    recomputed; round 0 and masks/round_01.pt are kept; the result equals the uninterrupted run."""
    import shutil

    full = full_runs("imp")
    run = tmp_path / "run"
    shutil.copytree(full, run)
    cmd = _cmd(data_dir, run, "imp")
    data = (run / "phases" / "round_01.pt").read_bytes()
    (run / "phases" / "round_01.pt").write_bytes(data[:100] + bytes(8) + data[108:])  # flipped bytes
    export = subprocess.run([sys.executable, "-m", "snnlth", "export", str(run), "--round", "1", "--out",
                             str(tmp_path / "t.safetensors")], env=ENV, capture_output=True, text=True, timeout=300)
    assert export.returncode == 2 and "round_01.pt is damaged" in export.stderr
    assert "delete summary.json" in export.stderr
    (run / "summary.json").unlink()
    kept = {p: (run / p).read_bytes() for p in ("phases/round_00.pt", "masks/round_01.pt")}
    again = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    warning = [line for line in again.stderr.splitlines() if line.startswith("snnlth: warning:")]
    assert len(warning) == 1 and "round_01.pt is damaged; it and the 2 file(s) made after it" in warning[0]
    assert "masks/round_02.pt, phases/round_02.pt" in warning[0]
    (aside,) = (run / "damaged").iterdir()
    assert sorted(p.relative_to(aside).as_posix() for p in aside.rglob("*.pt")) == [
        "masks/round_02.pt", "phases/round_01.pt", "phases/round_02.pt"]
    assert all((run / p).read_bytes() == b for p, b in kept.items())
    _same_results(full, run, [p.stem for p in (full / "masks").glob("*.pt")])


def test_a_damaged_mask_is_recomputed_with_the_phase_trained_on_it(data_dir, full_runs, tmp_path):
    import shutil

    full = full_runs("imp")
    run = tmp_path / "run"
    shutil.copytree(full, run)
    (run / "masks" / "round_02.pt").write_bytes((run / "masks" / "round_02.pt").read_bytes()[:-9])  # truncated
    (run / "summary.json").unlink()
    again = subprocess.run(_cmd(data_dir, run, "imp"), env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "round_02.pt is damaged; it and the 1 file(s) made after it (phases/round_02.pt)" in again.stderr
    _same_results(full, run, [p.stem for p in (full / "masks").glob("*.pt")])
