"""A find_ticket run is a normal run directory: every registered method works on a user's network, a rerun resumes
or returns it, ``snnlth report`` and ``snnlth export`` read it, ``load_ticket(path, model=net)`` loads its ticket
into a network of the same architecture, and a search killed by SIGKILL resumes to the same results."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import snnlth
from snnlth import masks as M
from snnlth.cli import main
from snnlth.rundir.store import load_blob
from tests.adapters import nets
from tests.methods.test_resume import ENV, _kill_when, _strip

pytestmark = pytest.mark.slow
SEARCH = dict(epochs=2, rounds=2, timesteps=3, lr=0.05, batch_size=64, progress=False)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fmnist():
    return nets.fmnist_tensors()


@pytest.fixture(scope="module")
def imp(fmnist, tmp_path_factory):
    (xtr, ytr), (xte, yte) = fmnist
    return snnlth.find_ticket(nets.snntorch_net(), (xtr, ytr), (xte, yte),
                              out=tmp_path_factory.mktemp("imp") / "run", **SEARCH)


def test_every_method_runs_on_a_user_network(imp, fmnist, tmp_path):
    (xtr, ytr), (xte, yte) = fmnist
    run = lambda **kw: snnlth.find_ticket(nets.snntorch_net(), (xtr, ytr), (xte, yte), **{**SEARCH, **kw})  # noqa
    alive = [M.count_alive(lv.masks) for lv in imp.levels]

    eb = run(method="eb", out=tmp_path / "eb")  # Early-Bird tickets of exactly IMP's sizes by default
    assert [M.count_alive(lv.masks) for lv in eb.levels] == alive[1:]  # one level per target, no dense one
    assert all(lv.final for lv in eb.levels)

    eb_et = run(method="eb", early_time=2, out=tmp_path / "eb_et")  # Early-Time combines with eb too
    assert eb_et.summary["early_time"]["t_early"] == 2 and all(lv.timesteps == 3 for lv in eb_et.levels)

    rnd = run(method="random", from_run=imp, out=tmp_path / "random")
    assert [M.count_alive(lv.masks) for lv in rnd.levels] == alive
    assert not torch.equal(rnd.levels[-1].masks["5.weight"], imp.levels[-1].masks["5.weight"])

    reinit = run(method="reinit", from_run=imp.run_dir, out=tmp_path / "reinit")
    last = reinit.levels[-1]
    assert M.count_alive(last.masks) == alive[-1] and last.accuracy is not None
    assert all(torch.equal(last.masks[n], imp.levels[-1].masks[n]) for n in last.masks)

    with pytest.raises(snnlth.ConfigError, match="another architecture"):  # a baseline needs the same network
        linear = torch.nn.Sequential(torch.nn.Flatten(2), torch.nn.Linear(784, 10))  # a Sequential too
        snnlth.find_ticket(linear, (xtr, ytr), (xte, yte), method="random", from_run=imp, out=tmp_path / "bad",
                           **SEARCH)
    assert not (tmp_path / "bad").exists()


def test_rerun_returns_the_finished_search_and_default_dirs_tell_inits_apart(fmnist, tmp_path):
    (xtr, ytr), (xte, yte) = fmnist
    first = snnlth.find_ticket(nets.SeqNet(seed=0), (xtr, ytr), (xte, yte), runs_root=tmp_path, **SEARCH)
    again = snnlth.find_ticket(nets.SeqNet(seed=0), (xtr, ytr), (xte, yte), runs_root=tmp_path, **SEARCH)
    other = snnlth.find_ticket(nets.SeqNet(seed=1), (xtr, ytr), (xte, yte), runs_root=tmp_path, **SEARCH)
    assert first.status == "searched" and again.status == "done" and other.status == "searched"
    assert again.run_dir == first.run_dir != other.run_dir
    assert first.run_dir.parent.name.startswith("imp-user-SeqNet-user-T3-")
    assert [lv.accuracy for lv in again.levels] == [lv.accuracy for lv in first.levels]


def test_an_snnlth_model_is_searched_as_it_is(fmnist, tmp_path):
    from snnlth.config import ModelConfig
    from snnlth.models.catalog import create_model

    (xtr, ytr), (xte, yte) = fmnist
    torch.manual_seed(0)
    model = create_model(ModelConfig(model="lenet300", timesteps=3), 1, 28, 10)
    result = snnlth.find_ticket(model, (xtr, ytr), (xte, yte), out=tmp_path / "run",
                                **{**SEARCH, "timesteps": None})  # the model's own T
    assert result.summary["model"] == "user:LeNet300" and result.levels[-1].timesteps == 3
    result.apply()
    assert all((dict(model.named_parameters())[n][~m] == 0).all() for n, m in result.best.masks.items())


def test_dataset_and_dataloader_give_the_tensor_results(fmnist, tmp_path):
    """Same order rule for every kind of data: a TensorDataset (or a DataLoader of it) trains exactly like the
    tensors themselves."""
    (xtr, ytr), (xte, yte) = fmnist
    tensors = snnlth.find_ticket(nets.SeqNet(), (xtr, ytr), (xte, yte), out=tmp_path / "t", **SEARCH)
    train = torch.utils.data.TensorDataset(xtr, ytr)
    loader = torch.utils.data.DataLoader(train, batch_size=7, shuffle=True)  # its own batch size and order are not used
    dataset = snnlth.find_ticket(nets.SeqNet(), loader, torch.utils.data.TensorDataset(xte, yte),
                                 out=tmp_path / "d", **SEARCH)
    assert [lv.accuracy for lv in dataset.levels] == [lv.accuracy for lv in tensors.levels]


def test_report_export_and_load_ticket_into_a_user_network(imp, fmnist, tmp_path, capsys):
    (_, _), (xte, yte) = fmnist
    assert main(["report", str(imp.run_dir), "--out", str(tmp_path / "report")]) == 0
    assert "user:Sequential" in (tmp_path / "report" / "report.md").read_text()
    ticket = tmp_path / "ticket.safetensors"
    assert main(["export", str(imp.run_dir), "--out", str(ticket)]) == 0
    capsys.readouterr()

    with pytest.raises(snnlth.ConfigError, match="model=net"):
        snnlth.load_ticket(ticket)
    net = nets.snntorch_net(seed=5)  # another init: the ticket replaces every value
    loaded = snnlth.load_ticket(ticket, model=net)
    assert loaded.model is net and not net.training
    expected = nets.snntorch_net()
    third = dataclasses.replace(imp, target=lambda: (expected, snnlth.adapters.wrap(expected)))
    assert third.apply() is expected  # apply into a third copy, to compare
    for (name, a), b in zip(net.state_dict().items(), expected.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert all((dict(net.named_parameters())[n][~m] == 0).all() for n, m in loaded.masks.items())

    with pytest.raises(snnlth.ConfigError, match="does not fit this model"):
        snnlth.load_ticket(ticket, model=nets.SeqNet())


def test_cli_resume_of_a_user_run_says_how(imp, capsys):
    assert main(["search", "--resume", str(imp.run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "find_ticket again" in err[0]


SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import snnlth
from tests.adapters import nets
train, test = nets.fmnist_tensors()
snnlth.find_ticket(nets.sj_net("s"), train, test, out={out!r}, epochs=3, rounds=2, timesteps=3, lr=0.05,
                   batch_size=32, rewind_epoch=1, progress=False)
"""


def test_killed_spikingjelly_search_resumes_to_the_same_results(tmp_path):
    def script(out):
        path = tmp_path / f"{out.name}.py"
        path.write_text(SCRIPT.format(root=str(ROOT), out=str(out)))
        return [sys.executable, str(path)]

    full, killed = tmp_path / "full", tmp_path / "killed"
    done = subprocess.run(script(full), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    _kill_when(script(killed), killed / "phases" / "round_01.ckpt.pt", killed / "phases" / "round_01.pt")
    resumed = subprocess.run(script(killed), env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a, b = (json.loads((d / "summary.json").read_text()) for d in (full, killed))
    assert _strip(a) == _strip(b)
    rows = lambda d: [_strip(json.loads(x)) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows(full) == rows(killed)
    for key in ("round_01", "round_02"):
        ma, mb = (M.unpack(load_blob(d / "masks" / f"{key}.pt")) for d in (full, killed))
        assert ma.keys() == mb.keys() and all(torch.equal(ma[n], mb[n]) for n in ma)
