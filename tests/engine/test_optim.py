"""The optimiser: PyTorch's fused SGD where it applies, with the update of the plain kernel."""

import copy
import math

import pytest
import torch
from torch import nn

from snnlth.config import TrainConfig
from snnlth.engine.optim import load_optimizer_state, make_optimizer


def _pair(quirks: str):
    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)), nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    b.load_state_dict(a.state_dict())
    cfg = TrainConfig(quirks=quirks, lr=0.1)
    extra = dict(dampening=cfg.weight_decay, weight_decay=0.0) if quirks == "official" else dict(
        weight_decay=cfg.weight_decay)
    plain = torch.optim.SGD(b.parameters(), lr=cfg.lr, momentum=cfg.momentum, foreach=False, **extra)
    return a, make_optimizer(a, cfg), b, plain


def _step(model, opt, x):
    opt.zero_grad()
    model(x).square().sum().backward()
    opt.step()


@pytest.mark.parametrize("quirks", ["paper", "official"])
def test_fused_sgd_takes_the_plain_kernels_steps(quirks):
    a, fused, b, plain = _pair(quirks)
    assert fused.param_groups[0]["fused"] is True
    for seed in range(5):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(seed))
        _step(a, fused, x)
        _step(b, plain, x)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_a_parameter_that_starts_training_later_steps_like_the_plain_kernel():
    """Fused SGD cannot mix parameters with and without momentum buffers: that step runs on the plain kernel."""
    a, fused, b, plain = _pair("paper")
    for frozen in (True, False, False):
        for model, opt in ((a, fused), (b, plain)):
            model[0].weight.requires_grad_(not frozen)
            _step(model, opt, torch.ones(3, 4))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert fused.param_groups[0]["fused"] is True  # back on the fused kernel once every buffer exists


def test_a_checkpoint_of_the_plain_kernel_resumes_on_the_fused_one():
    a, fused, b, plain = _pair("paper")
    _step(b, plain, torch.ones(3, 4))
    a.load_state_dict(b.state_dict())
    load_optimizer_state(fused, copy.deepcopy(plain.state_dict()))  # as read from a checkpoint: no shared buffers
    assert fused.param_groups[0]["fused"] is True and fused.param_groups[0]["foreach"] is None
    _step(a, fused, torch.ones(3, 4))
    _step(b, plain, torch.ones(3, 4))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


# ---- the user's recipe: --optimizer, --schedule, --warmup-epochs, --loss -------------------------------------------

@pytest.mark.parametrize(("name", "kind", "decoupled"), [("adam", torch.optim.Adam, False),
                                                        ("adamw", torch.optim.AdamW, True)])
def test_adam_family_with_betas_and_its_weight_decay(name, kind, decoupled):
    torch.manual_seed(0)
    a = nn.Linear(4, 3)
    b = copy.deepcopy(a)
    cfg = TrainConfig(optimizer=name, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)
    ours = make_optimizer(a, cfg)
    assert type(ours) is kind and ours.param_groups[0]["betas"] == (0.8, 0.99)
    plain = kind(b.parameters(), lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1, foreach=False)
    x = torch.randn(5, 4)
    for _ in range(3):
        _step(a, ours, x)
        _step(b, plain, x)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    # AdamW's decay is decoupled: with zero gradient it still shrinks the weights by lr * wd
    w = nn.Parameter(torch.ones(2))
    opt = make_optimizer(nn.ParameterList([w]), cfg)
    w.grad = torch.zeros(2)
    opt.step()
    assert torch.allclose(w.detach(), torch.full((2,), 1 - 1e-2 * 0.1)) == decoupled


def test_schedules_and_warmup_per_epoch():
    from snnlth.engine.optim import lr_at

    lrs = lambda **kw: [round(lr_at(TrainConfig(lr=1.0, epochs=8, **kw), e, 8), 6) for e in range(8)]  # noqa: E731
    assert lrs() == [round(0.5 * (1 + math.cos(math.pi * e / 8)), 6) for e in range(8)]  # today's cosine
    assert lrs(schedule="constant") == [1.0] * 8
    assert lrs(schedule="step") == [1.0] * 4 + [0.1] * 2 + [0.01] * 2  # x0.1 at 50 % and 75 % of the epochs
    assert lrs(schedule="linear") == [1 - e / 8 for e in range(8)]
    assert lrs(schedule="constant", warmup_epochs=3) == [0.25, 0.5, 0.75] + [1.0] * 5
    assert lrs(schedule="step", warmup_epochs=2) == [0.333333, 0.666667, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    assert lr_at(TrainConfig(epochs=8, warmup_epochs=3), 0, 1) == TrainConfig().lr  # a 1-epoch phase: no warm-up


def test_rate_losses():
    from snnlth.engine.evaluate import LOSSES

    out = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]])  # T=2, B=1, C=2: mean over T = [1, 0]
    y = torch.tensor([0])
    assert LOSSES["ce-rate"](out, y).item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert LOSSES["mse-rate"](out, y).item() == pytest.approx(0.0)  # the rate equals the one-hot label
    ce = (torch.nn.functional.cross_entropy(out[0], y) + torch.nn.functional.cross_entropy(out[1], y)) / 2
    assert LOSSES["ce"](out, y).item() == pytest.approx(ce.item())


def test_recipe_fields_are_checked_and_name_the_run_only_when_changed():
    from snnlth.config import SearchRunConfig
    from snnlth.config_io import config_hash
    from snnlth.errors import ConfigError

    base = config_hash(SearchRunConfig(), "imp")
    for kw in ({"optimizer": "adam"}, {"schedule": "step"}, {"warmup_epochs": 1}, {"loss": "mse-rate"},
               {"betas": (0.5, 0.9)}):
        assert config_hash(SearchRunConfig(train=TrainConfig(**kw)), "imp") != base
    assert config_hash(SearchRunConfig(train=TrainConfig(optimizer="sgd", schedule="cosine", loss="ce")),
                       "imp") == base
    with pytest.raises(ConfigError, match="--betas must be two numbers"):
        TrainConfig(betas=(0.9,))
    with pytest.raises(ConfigError, match="--warmup-epochs must be in"):
        TrainConfig(epochs=3, warmup_epochs=3)
    with pytest.raises(ConfigError, match="--optimizer does not go with --quirks official"):
        TrainConfig(optimizer="adam", quirks="official")


def test_a_search_trains_with_the_users_recipe(fmnist_dir, tmp_path):
    """--optimizer adam --schedule step --warmup-epochs 1 --loss mse-rate reach the engine: the rows' lr follow the
    schedule in every phase, the loss is the MSE (well below ln 10), and a rerun resumes the same run."""
    import dataclasses
    import json

    from snnlth.api import search
    from tests.helpers import search_cfg

    cfg = search_cfg(fmnist_dir, rounds=1, epochs=4)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, optimizer="adam", lr=1e-3, schedule="step",
                                                             warmup_epochs=1, loss="mse-rate"))
    res = search(cfg, out=tmp_path / "r")
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    for phase in ("round_00", "round_01"):
        assert [r["lr"] for r in rows if r["phase"] == phase] == pytest.approx([5e-4, 1e-3, 1e-4, 1e-5])
    assert all(r["train_loss"] < 0.2 for r in rows)  # an MSE of rates: at most 1 + 1/C, ~0.1 here
    assert search(cfg, out=tmp_path / "r").status == "done"
