"""Data-parallel search under torchrun (gloo, 2 CPU processes): the same masks and, within float tolerance, the same
numbers as one process with the same global batch and seed; a lost rank stops the others with one line; a run
resumes under another world size; ranks agree on every decision."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from snnlth import masks as M
from snnlth.errors import ConfigError
from snnlth.parallel import Dist, digest
from snnlth.rundir.store import load_blob
from tests.helpers import make_fmnist

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
BASE = ["--model", "lenet300", "--timesteps", "3", "--epochs", "2", "--rounds", "2", "--batch-size", "50",
        "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_fmnist(tmp_path_factory.mktemp("data") / "fmnist")


def _search(data_dir, out, *extra, nproc=1, env=None, timeout=300):
    snnlth = ["-m", "snnlth", "search", "--data-dir", str(data_dir), "--out", str(out), *BASE, *extra]
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)] if nproc > 1 else []
    return subprocess.run([sys.executable, *launch, *snnlth], env={**ENV, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _masks(run, key):
    return M.unpack(load_blob(run / "masks" / f"{key}.pt"))


@pytest.fixture(scope="module")
def single(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    proc = _search(data_dir, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_two_ranks_give_the_masks_and_numbers_of_one_process(data_dir, single, tmp_path):
    out = tmp_path / "two"
    proc = _search(data_dir, out, nproc=2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("summary: ") == 1  # only rank 0 prints the results
    for key in ("round_00", "round_01", "round_02"):
        a, b = _masks(single, key), _masks(out, key)
        assert list(a) == list(b) and not any(n.startswith("module.") for n in b)
        assert M.hamming(a, b) == 0.0, key
    one, two = _rows(single), _rows(out)
    assert [r["phase"] for r in one] == [r["phase"] for r in two]
    for r1, r2 in zip(one, two):
        assert r2["train_loss"] == pytest.approx(r1["train_loss"], rel=1e-4)
        assert r2["train_accuracy"] == pytest.approx(r1["train_accuracy"], abs=1.0)
        assert r2["test_accuracy"] == pytest.approx(r1["test_accuracy"], abs=1.0)
    state = load_blob(out / "phases" / "round_02.pt")["model"]
    assert not any(k.startswith("module.") for k in state)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and json.loads((single / "summary.json").read_text())["world_size"] == 1
    assert json.loads((out / "env.json").read_text())["starts"][-1]["world_size"] == 2


def test_a_lost_rank_stops_the_others_and_the_run_resumes_with_another_world_size(data_dir, single, tmp_path):
    out = tmp_path / "killed"
    start = time.monotonic()
    proc = _search(data_dir, out, nproc=2, env={"SNNLTH_FAULT_AT": "epoch:round_01", "SNNLTH_FAULT_RANK": "1"})
    assert proc.returncode != 0 and time.monotonic() - start < 90
    assert "rank 0 stopped: another rank of this torchrun failed" in proc.stderr
    assert not (out / "summary.json").exists() and (out / "masks" / "round_01.pt").exists()
    again = subprocess.run([sys.executable, "-m", "snnlth", "search", "--resume", str(out), "--no-progress"],
                           env=ENV, capture_output=True, text=True, timeout=300)  # one process now
    assert again.returncode == 0, again.stderr[-2000:]
    for key in ("round_01", "round_02"):
        assert M.hamming(_masks(single, key), _masks(out, key)) == 0.0
    assert [s["world_size"] for s in json.loads((out / "env.json").read_text())["starts"]] == [2, 1]


def test_early_bird_and_early_time_decide_alike_on_every_rank(data_dir, tmp_path):
    extra = ["--method", "eb", "--target-sparsity", "0.3", "0.6", "--eb-window", "2", "--eb-threshold", "0.05",
             "--epochs", "3", "--early-time", "auto", "--et-warmup-epochs", "1", "--et-batch", "50"]
    one, two = _search(data_dir, tmp_path / "one", *extra), _search(data_dir, tmp_path / "two", *extra, nproc=2)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    s1, s2 = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert s1["early_time"]["t_early"] == s2["early_time"]["t_early"]
    assert [e["detection_epoch"] for e in s1["eb"]] == [e["detection_epoch"] for e in s2["eb"]]


def test_sync_bn_matches_one_process_on_a_batchnorm_network(data_dir, tmp_path):
    extra = ["--model", "convnet", "--rounds", "1", "--epochs", "1", "--sync-bn"]
    one, two = _search(data_dir, tmp_path / "one", *extra), _search(data_dir, tmp_path / "two", *extra, nproc=2)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    r1, r2 = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [r["train_loss"] for r in r2] == pytest.approx([r["train_loss"] for r in r1], rel=1e-4)
    a = load_blob(tmp_path / "one" / "phases" / "round_00.pt")["model"]
    b = load_blob(tmp_path / "two" / "phases" / "round_00.pt")["model"]
    for k in a:  # BatchNorm running statistics included: they saw the global batch
        assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-3, atol=1e-5), k


def test_a_batch_that_does_not_divide_by_the_world_is_one_line(data_dir, tmp_path):
    proc = _search(data_dir, tmp_path / "r", "--batch-size", "25", nproc=2)
    assert proc.returncode != 0
    assert "snnlth: error: --batch-size 25 does not divide by the world size 2" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_shards_cover_the_global_batch_and_weigh_the_loss_to_its_mean():
    x, y = torch.arange(10.0).view(5, 2), torch.arange(5)
    parts = [Dist(r, 2).shard(x, y) for r in range(2)]
    assert torch.equal(torch.cat([p[0] for p in parts]), x) and [len(p[1]) for p in parts] == [3, 2]
    assert [p[2] for p in parts] == [3 * 2 / 5, 2 * 2 / 5]  # mean over ranks of (scale x local mean) = global mean
    assert Dist(0, 2).shard(x[:1], y[:1]) is None and Dist().shard(x, y) == (x, y, 1.0)
    with pytest.raises(ConfigError, match="--batch-size 25 does not divide by the world size 2"):
        Dist(0, 2).check_batch(25)
    Dist().check_batch(25)
    m = {"a": torch.tensor([True, False]), "b": torch.ones(2, 2)}
    assert digest(m) == digest(dict(reversed(m.items()))) != digest({**m, "a": torch.tensor([True, True])})


def test_a_nan_on_one_rank_stops_every_rank_at_that_batch_with_the_same_line(data_dir, tmp_path):
    """The loss turns NaN on rank 1 only (epoch 1, batch 3): both ranks stop there by themselves, each with the
    numerical-fault line naming that batch, none by torchrun's teardown."""
    start = time.monotonic()
    proc = _search(data_dir, tmp_path / "r", nproc=2, env={"SNNLTH_NAN_AT": "1:3", "SNNLTH_FAULT_RANK": "1"})
    assert proc.returncode != 0 and time.monotonic() - start < 90
    line = "snnlth: error: phase round_00 (round 0): the training loss became NaN or inf at epoch 1, batch 3;"
    assert proc.stderr.count(line) == 2, proc.stderr[-3000:]
    assert "another rank of this torchrun failed" not in proc.stderr


def test_skip_batch_skips_a_batch_that_is_bad_on_one_rank_on_every_rank(data_dir, tmp_path):
    out = tmp_path / "r"
    proc = _search(data_dir, out, "--on-nan", "skip-batch", "--rounds", "1", nproc=2,
                   env={"SNNLTH_NAN_AT": "1:2", "SNNLTH_FAULT_RANK": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = _rows(out)[0]
    assert first["skipped_batches"] == 1 and first["train_loss"] == first["train_loss"]  # finite, not NaN


def _evaluate_on_rank(rank: int, init: str, out: str) -> None:
    """One of two gloo ranks: a convnet ticket evaluated on its slice of the real test images."""
    import torch.distributed as tdist

    from snnlth.config import DataConfig
    from snnlth.data.loader import load_data
    from snnlth.engine.evaluate import evaluate
    from tests.helpers import sparse_ticket

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        data = load_data(DataConfig(train_subset=64, test_subset=150, augment=False), torch.device("cpu"), seed=0)
        model = sparse_ticket("convnet", data.train_x[:32].float() / 255, 3)
        seen = []
        model.register_forward_hook(lambda _m, inputs, _out: seen.append(len(inputs[0])))
        result = {**evaluate(model, data, 3, batch_size=64, dist=Dist(rank, 2, rank)), "seen": sum(seen)}
        with open(f"{out}/rank{rank}.json", "w") as fh:
            json.dump(result, fh)
    finally:
        tdist.destroy_process_group()


def test_evaluation_split_over_ranks_gives_the_numbers_of_one_process(tmp_path):
    """Each of 2 ranks evaluates a slice of every batch (150 images in batches of 64: slices 32/32, 32/32, 11/11);
    the sums added over the ranks give one process's accuracy, per-step accuracy and operation counts."""
    from snnlth.config import DataConfig
    from snnlth.data.loader import load_data
    from snnlth.engine.evaluate import evaluate
    from tests.helpers import sparse_ticket

    torch.multiprocessing.spawn(_evaluate_on_rank, args=(f"file://{tmp_path}/init", str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    data = load_data(DataConfig(train_subset=64, test_subset=150, augment=False), torch.device("cpu"), seed=0)
    one = evaluate(sparse_ticket("convnet", data.train_x[:32].float() / 255, 3), data, 3, batch_size=64)
    for two in ranks:
        assert two.pop("seen") == 75  # its slice: half of the 150 images
        assert two["accuracy"] == one["accuracy"] and two["loss"] == pytest.approx(one["loss"], rel=1e-6)
        assert [r["accuracy"] for r in two["per_timestep"]] == [r["accuracy"] for r in one["per_timestep"]]
        for key in ("effective_acs_per_image", "effective_macs_per_image", "dense_ops_per_image", "spikes_per_image",
                    "activation_sparsity"):
            assert two[key] == pytest.approx(one[key], rel=1e-9), key
    assert one["effective_acs_per_image"] > 0 and 0 < one["accuracy"] < 100
