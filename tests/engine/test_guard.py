"""The not-learning guard: a dense network at chance stops the run before anything is pruned, with what was seen and
what to try; --allow-chance goes on; a network that learns is never stopped."""

import dataclasses

import pytest
import torch

import snnlth
from snnlth.cli import main
from snnlth.engine.evaluate import LOSSES
from snnlth.engine.guard import LearningGuard, constant_output_loss, probe
from snnlth.errors import NotLearningError
from tests.helpers import make_fmnist, one_line_error, search_cfg, search_kit


def _dead(cfg):
    """No neuron can reach a threshold of 1000: nothing ever fires. Batches of 2: 100 an epoch, what the rules after
    epoch 1 need."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, v_threshold=1000.0),
                               train=dataclasses.replace(cfg.train, batch_size=2))


def test_constant_output_loss_is_ln_c_or_one_over_c():
    assert constant_output_loss(LOSSES["ce"], 10) == pytest.approx(2.302585, abs=1e-5)
    assert constant_output_loss(LOSSES["ce-rate"], 7) == pytest.approx(1.94591, abs=1e-5)
    assert constant_output_loss(LOSSES["mse-rate"], 10) == pytest.approx(0.1)


def test_a_silent_network_stops_after_its_first_epoch_and_nothing_is_pruned(tmp_path):
    cfg = _dead(search_cfg(make_fmnist(tmp_path / "d")))
    with pytest.raises(NotLearningError) as err:
        snnlth.search(cfg, out=tmp_path / "run")
    line = str(err.value)
    assert "\n" not in line and "after epoch 1" in line and "ln 10 = 2.3026" in line
    assert "no neuron of layer lif1 (LIF) fired" in line  # lenet300's first LIF
    assert "0 spikes per image reached the output" in line and "--optimizer adam --lr 1e-3" in line
    assert "--allow-chance" in line
    assert [p.name for p in (tmp_path / "run" / "masks").iterdir()] == ["round_00.pt"]  # the dense round's only
    assert err.value.exit_status == 1
    with pytest.raises(NotLearningError):  # a rerun stops again, for the same reason
        snnlth.search(cfg, out=tmp_path / "run")


def test_allow_chance_goes_on(tmp_path):
    cfg = _dead(search_cfg(make_fmnist(tmp_path / "d"), rounds=1, epochs=1))
    cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, allow_chance=True))
    run = snnlth.search(cfg, out=tmp_path / "run")
    assert [lvl.accuracy for lvl in run.levels] == [10.0, 10.0]


def test_the_cli_exits_1_with_one_line_for_train_and_search(tmp_path, capsys):
    data = str(make_fmnist(tmp_path / "d"))
    flags = ["--model", "lenet300", "--data-dir", data, "--epochs", "2", "--timesteps", "2", "--device", "cpu",
             "--v-threshold", "1000", "--batch-size", "2"]
    assert main(["train", *flags, "--out", str(tmp_path / "t")]) == 1
    assert "the dense network is not learning: after epoch 1" in one_line_error(capsys)
    assert main(["search", *flags, "--rounds", "1", "--out", str(tmp_path / "s")]) == 1
    assert "--allow-chance goes on anyway" in one_line_error(capsys)
    assert main(["train", *flags, "--out", str(tmp_path / "t2"), "--allow-chance", "--no-progress"]) == 0


def test_find_ticket_says_it_in_keywords(tmp_path):
    pytest.importorskip("snntorch")
    from tests.adapters.nets import fmnist_tensors, snntorch_net

    net = snntorch_net()
    for module in net.modules():
        if hasattr(module, "threshold"):
            module.threshold = torch.tensor(1000.0)
    train, test = fmnist_tensors(200, 64)
    with pytest.raises(snnlth.NotLearningError) as err:
        snnlth.find_ticket(net, train, test, timesteps=2, epochs=2, rounds=1, batch_size=2, progress=False,
                           out=tmp_path / "run")
    line = str(err.value)
    assert "try optimizer='adam', lr=1e-3, or a lower firing threshold; allow_chance=True goes on anyway" in line
    assert "--v-threshold" not in line and "no neuron of layer 2 (Leaky) fired" in line


def _guard(kit):
    return LearningGuard(kit.data, kit.cfg.train, LOSSES["ce"], lambda _epoch: kit.cfg.model.timesteps)


def test_too_short_a_phase_is_not_judged(tmp_path):
    """4 batches an epoch, 3 epochs: fewer than the guard needs to tell a slow start from a dead network (100 in
    the first epoch, 20 in the phase), so even a silent one goes on."""
    cfg = _dead(search_cfg(make_fmnist(tmp_path / "d"), rounds=1))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=50))
    assert len(snnlth.search(cfg, out=tmp_path / "run").levels) == 2


def test_the_end_of_the_phase_needs_both_accuracies_at_chance(tmp_path):
    cfg = search_cfg(make_fmnist(tmp_path / "d"))
    kit = search_kit(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=10)), tmp_path / "run")
    guard, row = _guard(kit), {"timesteps": 3, "train_loss": 2.2}
    with pytest.raises(NotLearningError, match=r"after its 2 epochs .* training accuracy 14.00 %, test accuracy "
                                               r"12.00 % \(chance 10.00 %\)"):
        guard.check_end(kit.model, [row, {**row, "train_accuracy": 14.0, "test_accuracy": 12.0}])
    guard.check_end(kit.model, [{**row, "train_accuracy": 40.0, "test_accuracy": 10.0}])  # lagging BN: learning
    guard.check_end(kit.model, [{**row, "train_accuracy": 12.0, "test_accuracy": 30.0}])


def test_a_network_that_learns_is_not_stopped_after_epoch_1(tmp_path):
    """The demo's model and recipe on real Fashion-MNIST (2,200 images, as configs/demo.toml): its first epoch moves
    the loss off ln 10 and spikes reach the output."""
    from snnlth.config import DataConfig, ModelConfig, RuntimeConfig, SearchRunConfig, TrainConfig

    cfg = SearchRunConfig(DataConfig(train_subset=2200, test_subset=500), ModelConfig(model="convnet"),
                          TrainConfig(epochs=3, lr=0.1), runtime=RuntimeConfig(device="cpu"))
    kit = search_kit(cfg, tmp_path / "run")
    dense = kit.train("dense", kit.init(), None, stream=0, round=0, epochs=1)  # guarded: stops if at chance
    seen = probe(kit.model, kit.data, 5, LOSSES["ce"])
    assert seen.output[1] > 0 and seen.silent is None and dense.history[0]["train_loss"] < 0.9 * seen.chance_loss
