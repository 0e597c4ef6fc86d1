"""A recipe given in Python: ``optimizer=`` / ``loss=`` callables train as their named twins do, are named in the run
by what they compute, and a run named by a callable never resumes without it or with another one."""

import dataclasses
import functools
import json

import pytest
import torch
import torch.nn.functional as F

import snnlth
from snnlth.engine.recipe import callable_name, with_recipe
from snnlth.errors import ConfigError, RunDirError
from tests.helpers import make_fmnist, search_cfg

LR = 0.01


def adam_factory(params):
    return torch.optim.Adam(params, lr=LR, weight_decay=5e-4)


def rate_ce(out_seq, y):
    return F.cross_entropy(out_seq.mean(0), y)


def _factory(lr):
    return lambda params: torch.optim.Adam(params, lr=lr)


def test_the_name_follows_what_the_callable_computes():
    name = callable_name(adam_factory)
    assert name.startswith("python:tests.engine.test_recipe.adam_factory@") and len(name.split("@")[1]) == 12
    assert callable_name(adam_factory) == name
    assert callable_name(rate_ce) != name
    assert callable_name(_factory(1e-3)) != callable_name(_factory(1e-2))  # a closed-over number changes it
    partial = functools.partial(torch.optim.Adam, lr=1e-3)
    assert callable_name(partial) != callable_name(functools.partial(torch.optim.Adam, lr=1e-2))
    assert callable_name(adam_factory, "my-adam") == "python:my-adam"


def test_a_callable_without_readable_source_asks_for_a_recipe_name():
    scope = {"torch": torch}
    exec("f = lambda params: torch.optim.Adam(params)", scope)  # as typed in an interactive session
    with pytest.raises(ConfigError, match="recipe_name="):
        callable_name(scope["f"])
    assert callable_name(scope["f"], "typed") == "python:typed"
    with pytest.raises(ConfigError, match="recipe_name= names a Python recipe"):
        with_recipe(snnlth.TrainConfig(), optimizer="adam", recipe_name="x")


def _levels(run):
    return [(lvl.sparsity, lvl.accuracy) for lvl in run.levels]


def test_callables_train_as_the_named_recipe_does(tmp_path):
    cfg = search_cfg(make_fmnist(tmp_path / "d"), rounds=1, epochs=2)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=LR))
    named_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, optimizer="adam", loss="ce-rate"))
    named = snnlth.search(named_cfg, out=tmp_path / "named")
    ours = snnlth.search(cfg, out=tmp_path / "python", optimizer=adam_factory, loss=rate_ce)
    assert [s for s, _ in _levels(ours)] == [s for s, _ in _levels(named)]
    assert [a for _, a in _levels(ours)] == pytest.approx([a for _, a in _levels(named)], abs=1.5)
    rows = [json.loads(line) for line in (tmp_path / "python" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows[:2]] == pytest.approx([LR, LR / 2])  # the cosine schedule scales the factory's lr
    with open(tmp_path / "named" / "metrics.jsonl") as fh:
        assert [json.loads(line)["train_loss"] for line in fh][:2] == pytest.approx([r["train_loss"] for r in rows[:2]],
                                                                                   rel=0.02)
    saved = json.loads((tmp_path / "python" / "config.json").read_text())
    assert saved["semantic"]["train"]["optimizer"] == callable_name(adam_factory)  # the identity names it
    assert saved["semantic"]["train"]["loss"] == callable_name(rate_ce)


def test_a_run_named_by_a_callable_resumes_only_with_it(tmp_path):
    cfg = search_cfg(make_fmnist(tmp_path / "d"), rounds=1, epochs=1)
    done = snnlth.search(cfg, out=tmp_path / "run", loss=rate_ce)
    assert snnlth.search(cfg, out=tmp_path / "run", loss=rate_ce).status == "done"
    with pytest.raises(RunDirError):
        snnlth.search(cfg, out=tmp_path / "run", loss=lambda out, y: rate_ce(out, y) * 2)  # another callable
    saved = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, loss=callable_name(rate_ce)))
    with pytest.raises(ConfigError, match="pass loss=<that callable>"):
        snnlth.search(saved, out=tmp_path / "other")  # a config naming a callable, without it
    assert not (tmp_path / "other").exists()
    assert done.summary["levels"]


def test_find_ticket_takes_the_callables(tmp_path):
    pytest.importorskip("snntorch")
    from tests.adapters.nets import fmnist_tensors, snntorch_net

    train, test = fmnist_tensors(128, 64)
    run = snnlth.find_ticket(snntorch_net(), train, test, timesteps=2, epochs=1, rounds=1, optimizer=adam_factory,
                             loss=rate_ce, recipe_name="tutorial", progress=False, out=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["semantic"]["train"]
    assert (saved["optimizer"], saved["loss"]) == ("python:tutorial", "python:tutorial")
    assert len(run.levels) == 2
