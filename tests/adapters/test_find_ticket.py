"""find_ticket on a small SNN of each framework (spikingjelly single- and multi-step, snntorch, a hand-written
stepwise net, a plain multi-step module), on a tiny real Fashion-MNIST subset: a 2-round IMP and an Early-Time
(auto) search; exact sparsities; the ticket's zeros inside the user's own parameters; the network still runs in its
own framework and gives the accuracy the search reported."""


import pytest
import torch

import snnlth
from snnlth import masks as M
from tests.adapters import nets
from tests.adapters.cases import CASES

pytestmark = pytest.mark.slow
SEARCH = dict(epochs=2, rounds=2, lr=0.05, batch_size=64, progress=False)


@pytest.fixture(scope="module")
def fmnist():
    return nets.fmnist_tensors()


def own_accuracy(case, net, x, y, t):
    net.eval()
    with torch.no_grad():
        return 100.0 * (case.own(net, x, t).argmax(-1) == y).float().mean().item()


def check_ticket_inside(net, level, before):
    """Pruned weights are exactly 0 inside the user's parameters, survivors were trained (changed)."""
    params = dict(net.named_parameters())
    for name, mask in level.masks.items():
        assert (params[name][~mask] == 0).all(), name
    changed = [n for n in level.masks if not torch.equal(params[n], before[n])]
    assert changed


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_imp_two_rounds(case, fmnist, tmp_path):
    (xtr, ytr), (xte, yte) = fmnist
    net = case.build()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    adapted = case.adapt(net, 3)
    result = snnlth.find_ticket(adapted, (xtr, ytr), (xte, yte), out=tmp_path / "run", **SEARCH)

    assert result.status == "searched" and len(result.levels) == 3
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())  # the search trained copies
    dense = {n: torch.ones_like(before[n], dtype=torch.bool) for n in result.levels[0].masks}
    expected = M.imp_survivors(dense, 0.25, 2, "global")
    for level, survivors in zip(result.levels, expected):
        assert M.count_alive(level.masks) == survivors  # global scope: one count over all tensors
        pruned = M.count_total(dense) - M.survivors_total(survivors)
        assert level.record["pruned_weights"] == pruned
        assert level.sparsity == pytest.approx(pruned / M.count_total(dense))

    model = result.apply()
    assert model is adapted and not net.training  # apply returns what was given, in eval mode
    check_ticket_inside(net, result.best, before)
    acc = own_accuracy(case, net, xte, yte, 3)
    assert abs(acc - result.best.accuracy) <= 100.0 / len(yte) + 1e-9  # at most one image apart
    last = result.summary["levels"][-1]
    assert last["spikes_per_image"] > 0 and last["synops_per_image"] > 0 and last["macs_per_image"] > 0

    result.apply(1)  # another level goes in just as well
    check_ticket_inside(net, result.levels[1], before)
    assert abs(own_accuracy(case, net, xte, yte, 3) - result.levels[1].accuracy) <= 100.0 / len(yte) + 1e-9


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_early_time_auto(case, fmnist, tmp_path):
    (xtr, ytr), (xte, yte) = fmnist
    net = case.build()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    model = net if case.auto else case.adapt(net, 4)
    result = snnlth.find_ticket(model, (xtr, ytr), (xte, yte), timesteps=4, early_time="auto", et_warmup_epochs=1,
                                et_threshold=0.99, out=tmp_path / "run", **SEARCH)  # lenient: some T < 4 qualifies
    et = result.summary["early_time"]
    assert et["mode"] == "auto" and 2 <= et["t_early"] <= 3
    final = result.best
    assert final.final and final.timesteps == 4 and final.round == 2
    assert [lv.timesteps for lv in result.levels[:-1]] == [et["t_early"]] * 2
    result.apply()
    check_ticket_inside(net, final, before)
    assert abs(own_accuracy(case, net, xte, yte, 4) - final.accuracy) <= 100.0 / len(yte) + 1e-9
