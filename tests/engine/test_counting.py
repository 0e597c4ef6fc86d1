"""The counting evaluation: operations equal to ``count_ops`` (hence NeuroBench's), accuracy and firing per timestep
computed again here from the logits and the neuron outputs, activation and connection sparsity as NeuroBench gives
them, and the uniform-activity fallback of a network NeuroBench's rules for recurrent layers would be needed for."""

import itertools

import pytest
import torch
from torch import nn

import snnlth
from snnlth.adapters import wrap
from snnlth.config import DataConfig
from snnlth.data import load_data
from snnlth.engine.counting import COUNT_KEYS, ESTIMATE, EXACT
from snnlth.engine.energy import E_AC_PJ, E_MAC_PJ
from snnlth.engine.evaluate import evaluate
from snnlth.errors import ConfigError
from snnlth.snn.neuron import LIF, is_spiking_neuron
from tests.helpers import SummedOverT, sparse_ticket

T = 3


@pytest.fixture(scope="module")
def data():
    """100 real Fashion-MNIST test images (evaluated in batches of 40: the last one ragged)."""
    return load_data(DataConfig(train_subset=100, test_subset=100, augment=False), torch.device("cpu"), seed=0)


def _images(data) -> tuple[torch.Tensor, torch.Tensor]:
    return next(data.eval_batches(1000, "test"))


def _ticket(data) -> nn.Module:
    """convnet with half of every weight exactly 0 and BatchNorm statistics of real images (spikes in eval mode)."""
    return sparse_ticket("convnet", next(data.eval_batches(100, "train"))[0], T)


def _neuron_outputs(model: nn.Module, x: torch.Tensor, timesteps: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits ``[T, B, C]`` and every output of every spiking neuron layer, in call order."""
    outs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: outs.append(o[0] if isinstance(o, tuple) else o))
             for m in model.modules() if is_spiking_neuron(m)]
    with torch.no_grad():
        logits = model.eval()(x, timesteps)
    for h in hooks:
        h.remove()
    return logits, outs


def _assert_ops_equal(res: dict, ops) -> None:
    assert res["energy_model"] == EXACT
    assert res["effective_acs_per_image"] == pytest.approx(ops.effective_acs, rel=1e-12)
    assert res["effective_macs_per_image"] == pytest.approx(ops.effective_macs, rel=1e-12)
    assert res["dense_ops_per_image"] == pytest.approx(ops.dense, rel=1e-12)
    for kind in ("effective_acs", "effective_macs"):  # per_timestep: cumulative over steps 1..t
        cumulative = list(itertools.accumulate(r[kind] for r in ops.per_timestep))
        assert [r[kind] for r in res["per_timestep"]] == pytest.approx(cumulative, rel=1e-12)
    assert (res["synops_per_image"], res["macs_per_image"]) == (res["effective_acs_per_image"],
                                                                res["effective_macs_per_image"])
    expected = (res["effective_acs_per_image"] * E_AC_PJ + res["effective_macs_per_image"] * E_MAC_PJ) * 1e-6
    assert res["energy_uj_per_image"] == pytest.approx(expected)


def test_the_evaluation_counts_what_count_ops_counts(data):
    model = _ticket(data)
    res = evaluate(model, data, T, batch_size=40)
    ops = snnlth.count_ops(model, _images(data)[0], timesteps=T)
    _assert_ops_equal(res, ops)
    assert ops.effective_acs > 0 and ops.effective_macs > 0  # both kinds are there to be compared
    assert set(COUNT_KEYS) <= set(res)


def test_accuracy_per_timestep_is_that_of_the_logits_summed_up_to_t(data):
    model = _ticket(data)
    res = evaluate(model, data, T, batch_size=40)
    x, y = _images(data)
    logits, _ = _neuron_outputs(model, x, T)
    by_hand = [100.0 * float((logits[:t].sum(0).argmax(-1) == y).float().mean()) for t in range(1, T + 1)]
    assert [r["accuracy"] for r in res["per_timestep"]] == pytest.approx(by_hand)
    assert [r["t"] for r in res["per_timestep"]] == [1, 2, 3]
    assert res["per_timestep"][-1]["accuracy"] == res["accuracy"]
    for row in res["per_timestep"][:-1]:  # the network is causal: the first t steps are inference at T' = t
        assert evaluate(model, data, row["t"], count=False)["accuracy"] == pytest.approx(row["accuracy"])


def test_step_correct_sums_the_logits_up_to_each_step():
    from snnlth.engine.counting import step_correct

    # image 0: step 1 says class 0 strongly, steps 2 and 3 a little class 1 (every sum stays class 0); image 1:
    # steps 1 and 2 say class 1, step 3 class 0 strongly enough to turn the sum
    logits = torch.tensor([[[3.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [3.0, 0.0]]])
    assert step_correct(logits, torch.tensor([0, 1])).tolist() == [2, 2, 1]
    assert step_correct(logits, torch.tensor([1, 0])).tolist() == [0, 0, 1]


def test_firing_per_timestep_and_the_sparsities_are_neurobenchs(data):
    pytest.importorskip("neurobench")
    from neurobench.metrics.static import ConnectionSparsity
    from neurobench.metrics.workload import ActivationSparsity
    from neurobench.models import TorchModel

    model = _ticket(data)
    res = evaluate(model, data, T, batch_size=40)
    x, y = _images(data)
    _, outs = _neuron_outputs(model, x, T)  # multi-step LIF: [T, B, ...] per layer
    spikes = [sum(float((o[t] != 0).sum()) for o in outs) for t in range(T)]
    outputs = [sum(o[t].numel() for o in outs) for t in range(T)]
    by_hand = [sum(spikes[:t]) / sum(outputs[:t]) for t in range(1, T + 1)]
    assert [r["firing_rate"] for r in res["per_timestep"]] == pytest.approx(by_hand, rel=1e-12)
    assert res["activation_sparsity"] == pytest.approx(1 - by_hand[-1], rel=1e-12)

    nb = TorchModel(SummedOverT(model, T))
    nb.add_activation_module(LIF)
    nb.register_hooks()
    with torch.no_grad():
        preds = nb(x)
    assert res["activation_sparsity"] == pytest.approx(ActivationSparsity()(nb, preds, (x, y)), rel=1e-9)
    assert res["connection_sparsity"] == pytest.approx(ConnectionSparsity()(nb), abs=1e-4)  # theirs: 4 decimals
    assert 0.45 < res["connection_sparsity"] < 0.55


@pytest.mark.parametrize("kind", ["snntorch", "spikingjelly-s", "spikingjelly-m"])
def test_adapted_networks_are_counted_per_timestep(data, kind):
    from tests.adapters import nets

    if kind == "snntorch":
        pytest.importorskip("snntorch")
        net = nets.snntorch_net()
    else:
        pytest.importorskip("spikingjelly")
        net = nets.sj_net(kind[-1])
    model = wrap(net, T)
    res = evaluate(model, data, T, batch_size=40)
    x, _ = _images(data)
    _assert_ops_equal(res, snnlth.count_ops(net, x, timesteps=T))
    _, outs = _neuron_outputs(model, x, T)
    if kind == "spikingjelly-m":  # one call per layer: [T, B, ...]
        outs = [o[t] for t in range(T) for o in outs]
    per_step = len(outs) // T  # step-wise: T calls per layer, step-major
    spikes = [sum(float((o != 0).sum()) for o in outs[t * per_step:(t + 1) * per_step]) for t in range(T)]
    outputs = [sum(o.numel() for o in outs[t * per_step:(t + 1) * per_step]) for t in range(T)]
    by_hand = [sum(spikes[:t]) / sum(outputs[:t]) for t in range(1, T + 1)]
    assert [r["firing_rate"] for r in res["per_timestep"]] == pytest.approx(by_hand, rel=1e-12)
    assert res["spikes_per_image"] == pytest.approx(sum(spikes) / len(x))  # binary spikes: sum = non-zero count


class _Recurrent(nn.Module):
    """A network with a GRU cell (NeuroBench counts it by rules for stateful layers) and a linear readout."""

    def __init__(self) -> None:
        super().__init__()
        self.cell, self.fc = nn.GRUCell(28 * 28, 16), nn.Linear(16, 10)

    def prunable_names(self) -> list[str]:
        return ["fc.weight"]

    def forward(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        h, out = None, []
        for _ in range(timesteps):
            h = self.cell(x.flatten(1), h)
            out.append(self.fc(h))
        return torch.stack(out)


def test_a_network_neurobench_counts_by_other_rules_gets_the_estimate_marked(data):
    torch.manual_seed(0)
    model = _Recurrent()
    res = evaluate(model, data, T, batch_size=40)
    assert res["energy_model"] == ESTIMATE
    assert res["effective_acs_per_image"] is None and res["dense_ops_per_image"] is None
    assert res["macs_per_image"] == pytest.approx(16 * 10 * T)  # the readout, fed by real values, at every step
    assert all(r["effective_acs"] is None for r in res["per_timestep"])
    assert res["per_timestep"][-1]["accuracy"] == res["accuracy"]
    assert res["spikes_per_image"] == 0.0 and res["activation_sparsity"] is None  # no spiking layer
    with pytest.raises(ConfigError, match="cell"):
        snnlth.count_ops(model, _images(data)[0], timesteps=T)


def test_without_counting_every_count_key_is_none(data):
    res = evaluate(_ticket(data), data, T, count=False)
    assert all(res[k] is None for k in COUNT_KEYS)
