"""``snnlth.count_ops`` counts synaptic operations as NeuroBench 2.3.0 does, on the same ticket and images."""

import pytest
import torch
from torch import nn

import snnlth
from snnlth.config import ModelConfig
from snnlth.models.catalog import create_model


def _ticket(name: str, sparsity: float = 0.5, seed: int = 0) -> nn.Module:
    """An snnlth model with ``sparsity`` of every conv/linear weight set to exactly 0, its BatchNorm statistics
    those of real images (as after training: with the initial ones nothing spikes in eval mode)."""
    torch.manual_seed(seed)
    model = create_model(ModelConfig(model=name, timesteps=3), 1, 28, 10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight[torch.rand_like(m.weight) < sparsity] = 0
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # a cumulative average: one pass sets them
        model.train()(_images(), 3)
    return model.eval()


def _images(n: int = 32):
    train, _ = snnlth.load_dataset("fmnist", train_subset=100, test_subset=10)
    return train[0][:n]


class _Summed(nn.Module):
    """What NeuroBench runs: images in, logits summed over T out."""

    def __init__(self, model: nn.Module, timesteps: int) -> None:
        super().__init__()
        self.model, self.timesteps = model, timesteps

    def forward(self, x):
        return self.model(x, self.timesteps).sum(0)


def _neurobench(model: nn.Module, x: torch.Tensor, timesteps: int) -> dict:
    pytest.importorskip("neurobench")
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    nb = TorchModel(_Summed(model, timesteps))
    nb.register_hooks()
    with torch.no_grad():
        preds = nb(x)
    return SynapticOperations()(nb, preds, (x, torch.zeros(len(x), dtype=torch.long)))


@pytest.mark.parametrize("name", ["convnet", "lenet300"])
def test_the_counts_are_neurobenchs(name):
    model, x = _ticket(name), _images()
    ours = snnlth.count_ops(model, x, timesteps=3)
    theirs = _neurobench(model, x, 3)
    # NeuroBench sums each call in float32 (rounding at ~1e-7 of millions); snnlth counts exactly, in float64
    assert ours.effective_acs == pytest.approx(theirs["Effective_ACs"], rel=1e-6)
    assert ours.effective_macs == pytest.approx(theirs["Effective_MACs"], rel=1e-6)
    assert ours.dense == pytest.approx(theirs["Dense"], rel=1e-6)
    assert ours.effective_acs > 0 and ours.effective_macs > 0 and ours.effective_acs < ours.dense


def test_breakdowns_add_up_and_the_direct_coded_layer_runs_once():
    model, x = _ticket("convnet"), _images()
    ops = snnlth.count_ops(model, x, timesteps=3)
    assert ops.once_per_image == ["blocks.0.0"]  # the first conv feeds every step from one run
    assert set(ops.per_layer) == {"blocks.0.0", "blocks.1.0", "blocks.2.0", "classifier"}
    assert sum(r["effective_acs"] for r in ops.per_layer.values()) == pytest.approx(ops.effective_acs)
    assert sum(r["effective_acs"] for r in ops.per_timestep) == pytest.approx(ops.effective_acs)
    assert ops.per_timestep[0]["effective_macs"] == pytest.approx(ops.effective_macs)  # counted once, at step 1
    assert all(r["effective_macs"] == 0 for r in ops.per_timestep[1:])
    assert all(r["effective_acs"] > 0 for r in ops.per_timestep[1:])  # spikes at every later step too


def test_pruning_lowers_the_effective_count_not_the_dense_one():
    x = _images()
    sparse, denser = (snnlth.count_ops(_ticket("lenet300", s), x, timesteps=3) for s in (0.9, 0.1))
    assert sparse.dense == denser.dense and sparse.effective_macs < denser.effective_macs


def test_a_step_by_step_snntorch_network_is_split_per_step():
    pytest.importorskip("snntorch")
    from tests.adapters.nets import snntorch_net

    net, x = snntorch_net(), _images()
    ops = snnlth.count_ops(net, x, timesteps=4)
    assert len(ops.per_timestep) == 4 and ops.once_per_image == []
    assert sum(r["dense"] for r in ops.per_timestep) == pytest.approx(ops.dense)
    assert ops.per_timestep[0]["dense"] == pytest.approx(ops.dense / 4)  # the same layers at every step


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_spikingjelly_layers_in_both_step_modes(step_mode):
    pytest.importorskip("spikingjelly")
    from tests.adapters.nets import sj_net

    ops = snnlth.count_ops(sj_net(step_mode), _images(), timesteps=3)
    assert ops.dense > 0 and len(ops.per_timestep) == 3  # spikingjelly's Conv2d is a subclass of nn.Conv2d
    assert sum(r["dense"] for r in ops.per_timestep) == pytest.approx(ops.dense)
