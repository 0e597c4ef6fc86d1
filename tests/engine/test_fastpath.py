"""The speed settings of a run (snnlth.engine.fastpath) and what the engine skips when nobody asks for it."""

import dataclasses
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from snnlth.config import DataConfig, ModelConfig, RuntimeConfig, TrainConfig
from snnlth.data import load_data
from snnlth.engine.evaluate import evaluate
from snnlth.engine.fastpath import (
    CPU_COMPILE_MIN_WORK,
    KernelChoice,
    lif_neurons,
    lif_work,
    prepare,
    resolve_lif_kernel,
    set_lif_kernel,
)
from snnlth.engine.kernels import CompiledKernel
from snnlth.engine.loop import FitHooks, FitSettings, FitState, Schedule, fit
from snnlth.engine.optim import make_optimizer
from snnlth.models import create_model
from snnlth.snn.neuron import LIF

CPU = torch.device("cpu")


def _model_and_data(fmnist_dir, model="convnet", n=200):
    data = load_data(DataConfig(train_subset=n, test_subset=100), CPU, data_dir=str(fmnist_dir))
    torch.manual_seed(0)
    return create_model(ModelConfig(model=model, timesteps=2), 1, 28, 10), data


def test_evaluation_counts_spikes_only_when_asked(fmnist_dir):
    model, data = _model_and_data(fmnist_dir, "lenet300")
    counted, plain = evaluate(model, data, 2), evaluate(model, data, 2, count=False)
    assert counted["accuracy"] == plain["accuracy"] and counted["loss"] == pytest.approx(plain["loss"])
    assert counted["spikes_per_image"] > 0 and counted["synops_per_image"] > 0
    assert plain["spikes_per_image"] is None and plain["synops_per_image"] is None
    assert plain["energy_uj_per_image"] is None


def test_fit_counts_on_the_last_evaluation_of_a_phase_only(fmnist_dir):
    model, data = _model_and_data(fmnist_dir, "lenet300")
    cfg = TrainConfig(epochs=3, batch_size=50)
    state = fit(model, make_optimizer(model, cfg), data, FitSettings(cfg), Schedule(3, 2))
    assert [h["test_accuracy"] is not None for h in state.history] == [True, True, True]
    assert [h["spikes_per_image"] is not None for h in state.history] == [False, False, True]


def test_lif_kernel_choice():
    assert resolve_lif_kernel("auto", CPU) == "eager"
    assert resolve_lif_kernel("auto", CPU, work=CPU_COMPILE_MIN_WORK - 1) == "eager"
    assert resolve_lif_kernel("auto", CPU, work=CPU_COMPILE_MIN_WORK) == "compiled"
    assert resolve_lif_kernel("auto", CPU, work=CPU_COMPILE_MIN_WORK / 2, seen=CPU_COMPILE_MIN_WORK / 2) == "compiled"
    assert resolve_lif_kernel("eager", CPU, work=1e15) == "eager"
    assert resolve_lif_kernel("compiled", CPU) == "compiled"
    help_text = {f.name: f.metadata["help"] for f in dataclasses.fields(RuntimeConfig)}["lif_kernel"]
    assert f"{CPU_COMPILE_MIN_WORK:.0e}".replace("+", "") in help_text  # the flag's help names the threshold in force
    model = create_model(ModelConfig(model="convnet"), 1, 28, 10)
    assert set_lif_kernel(model, CompiledKernel()) == 3
    assert _kernels(model) == {"compiled"}
    prepare(model, RuntimeConfig(lif_kernel="eager"), CPU)
    assert _kernels(model) == {"eager"}


def _kernels(model):
    return {m.kernel.name for m in model.modules() if isinstance(m, LIF)}


def _uncompiled():
    """The compiled kernel with its functions left uncompiled (the same maths), to keep tests short."""
    return CompiledKernel(lambda fn: fn)


def test_lif_neurons_counts_every_neuron_of_one_image_once_per_step():
    model = create_model(ModelConfig(model="convnet"), 1, 28, 10)  # LIF after 32, 64, 128 channels at 28, 14, 7 px
    model.train()
    stats = [b.clone() for b in model.buffers()]
    assert lif_neurons(model, torch.randn(4, 1, 28, 28), 3) == 32 * 28 * 28 + 64 * 14 * 14 + 128 * 7 * 7
    assert model.training and all(torch.equal(a, b) for a, b in zip(stats, model.buffers()))  # BN stats untouched
    assert all(not m._forward_hooks for m in model.modules())
    assert lif_work(100, 50, [5, 5, 3]) == 100 * 50 * 13


@pytest.mark.parametrize(("threshold", "expected"), [(1.0, "compiled"), (1e15, "eager")])
def test_auto_compiles_the_lif_on_cpu_for_a_long_phase_only(fmnist_dir, monkeypatch, threshold, expected):
    """fit measures the phase's work (neurons x images x T per epoch) and ``auto`` compiles for a long one; the
    compiled kernels are stood in for by their uncompiled functions (the same maths) to keep the test short."""
    from snnlth.engine import fastpath

    monkeypatch.setattr(fastpath, "CPU_COMPILE_MIN_WORK", threshold)
    monkeypatch.setattr(fastpath, "CompiledKernel", _uncompiled)
    seen = []
    monkeypatch.setattr(fastpath, "set_lif_kernel", lambda m, k: seen.append(k.name) or set_lif_kernel(m, k))
    model, data = _model_and_data(fmnist_dir, n=60)
    cfg = TrainConfig(epochs=1, batch_size=30)
    fit(model, make_optimizer(model, cfg), data, FitSettings(cfg), Schedule(1, 2))
    assert seen == [expected]
    assert _kernels(model) == {expected}


def test_a_run_of_short_phases_compiles_once_their_sum_reaches_the_threshold(monkeypatch):
    from snnlth.engine import fastpath

    monkeypatch.setattr(fastpath, "CPU_COMPILE_MIN_WORK", 100.0)
    choice = KernelChoice()
    assert [choice.choose(lambda: 60.0) for _ in range(3)] == ["eager", "compiled", "compiled"]
    assert choice.kernel("compiled") is choice.kernel("compiled")  # one compiled kernel per run: one warning
    assert KernelChoice().choose(lambda: 60.0) == "eager"  # a new run starts from nothing
    with pytest.warns(RuntimeWarning, match="could not count"):
        assert KernelChoice().choose(lambda: 1 / 0) == "eager"  # a failing probe never stops training


def test_a_search_shares_its_count_across_phases(fmnist_dir, tmp_path, monkeypatch):
    """lenet300 (400 LIF neurons) on 200 images, 3 epochs at T=3: 720,000 neuron-timesteps a phase; with the
    threshold between one and two phases the first trains eagerly and every later one compiled."""
    from snnlth.api import search
    from snnlth.engine import fastpath
    from tests.helpers import search_cfg

    monkeypatch.setattr(fastpath, "CPU_COMPILE_MIN_WORK", 1e6)
    monkeypatch.setattr(fastpath, "CompiledKernel", _uncompiled)
    seen = []
    monkeypatch.setattr(fastpath, "set_lif_kernel", lambda m, k: seen.append(k.name) or set_lif_kernel(m, k))
    search(search_cfg(fmnist_dir, rounds=2), out=tmp_path / "r")
    assert seen[0] == "eager" and len(seen) >= 2 and set(seen[1:]) == {"compiled"}


def test_the_probe_leaves_the_global_random_streams_alone():
    np.random.seed(0)  # a draw then moves numpy's position, not only (sometimes) its key array
    state = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    KernelChoice().choose(lambda: torch.rand(1).item() + random.random() + np.random.rand())
    assert torch.equal(state[0], torch.get_rng_state()) and state[1] == random.getstate()
    after = np.random.get_state()
    assert np.array_equal(state[2][1], after[1]) and state[2][2:] == after[2:]


class _NoisyImages(torch.utils.data.Dataset):
    """Float64 items (numpy's default) with a random transform drawing from the global torch RNG."""

    def __init__(self, n):
        gen = torch.Generator().manual_seed(1)
        self.x, self.y = torch.rand(n, 1, 28, 28, generator=gen, dtype=torch.float64), torch.arange(n) % 10

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i] + 0.1 * torch.rand(1, 28, 28, dtype=torch.float64), self.y[i]


def test_auto_trains_as_eager_does_below_the_threshold_with_a_random_float64_dataset():
    """The probe (one image through the model) costs a sample from the dataset; training must not see it: same
    weights as --lif-kernel eager, and float64 items are cast as the training batches are."""
    from snnlth.data.user import make_source

    data = make_source(_NoisyImages(40), _NoisyImages(20), CPU, 10)
    assert data.sample(2, 0).dtype == torch.float32
    weights = []
    for kernel in ("eager", "auto"):
        torch.manual_seed(0)
        model = create_model(ModelConfig(model="convnet", timesteps=2), 1, 28, 10)
        cfg = TrainConfig(epochs=1, batch_size=20)
        fit(model, make_optimizer(model, cfg), data, FitSettings(cfg, RuntimeConfig(lif_kernel=kernel)), Schedule(1, 2))
        assert _kernels(model) == {"eager"}
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_auto_counts_the_epochs_this_call_trains_at_their_T(fmnist_dir, monkeypatch):
    import snnlth.engine.loop as loop

    calls = []
    monkeypatch.setattr(loop, "lif_work", lambda n, images, ts: calls.append((n, images, list(ts))) or 0.0)
    model, data = _model_and_data(fmnist_dir, n=60)
    cfg = TrainConfig(epochs=3, batch_size=30)
    settings = FitSettings(cfg, RuntimeConfig(eval_every=3))
    schedule = Schedule(3, lambda e: 2 if e < 2 else 1)
    fit(model, make_optimizer(model, cfg), data, settings, schedule, FitState(epoch=1))  # resumed after epoch 1
    assert calls == [(32 * 28 * 28 + 64 * 14 * 14 + 128 * 7 * 7, 60, [2, 1])]
    fit(model, make_optimizer(model, cfg), data, settings, schedule, FitState(epoch=3))  # nothing left: no probe
    assert len(calls) == 1


def test_channels_last_setting(fmnist_dir):
    model, data = _model_and_data(fmnist_dir)
    prepare(model, RuntimeConfig(channels_last=True), CPU)
    assert model.blocks[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    x, _ = next(data.eval_batches(8))
    seen = []
    model.blocks[0][0].register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous(
        memory_format=torch.channels_last)))
    assert model(x, 2).shape == (2, 8, 10) and seen == [True]


@pytest.mark.parametrize("policy", ["keep", "system"])
def test_cpu_memory_policy_is_applied_once_and_can_be_refused(policy):
    code = ("from snnlth.engine.cpu_memory import keep_freed_memory as k; import sys; "
            "sys.stdout.write(str(k()) + str(k()))")
    env = {"SNNLTH_CPU_MALLOC": policy, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    if sys.platform.startswith("linux"):
        assert out == ("TrueTrue" if policy == "keep" else "FalseFalse")


def test_progress_bar_reads_the_device_at_most_twice_a_second(monkeypatch):
    import io

    from snnlth import progress
    from snnlth.engine.loop import BatchInfo

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())  # bars are drawn on a terminal only

    reads = []

    class Info(BatchInfo):
        @property
        def loss(self):
            reads.append(self.batch)
            return 0.0

    bar = progress.Progress()
    for i in range(1, 101):  # 100 batches in 1 s of training: reads at 0.5 s, 1.0 s and on the last batch
        bar.on_batch(Info(0, 1, i, 100, torch.zeros(()), torch.zeros(()), i, i / 100))
    bar.close()
    assert reads == [50, 100]


def test_compiled_model_trains_on_full_batches_only(fmnist_dir):
    """--compile: the model runs through torch.compile, the ragged last batch is left out (one batch shape), the
    last evaluation still counts spikes (on the model itself) and the state dict keeps the model's own names."""
    model, data = _model_and_data(fmnist_dir, "lenet300", n=180)
    names = set(model.state_dict())
    cfg = TrainConfig(epochs=2, batch_size=50)
    seen = []
    state = fit(model, make_optimizer(model, cfg), data, FitSettings(cfg, RuntimeConfig(compile=True)), Schedule(2, 2),
                hooks=FitHooks(on_batch=lambda i: seen.append(i.seen)))
    assert seen == [50, 100, 150] * 2  # 180 images: 30 left out per epoch
    assert state.history[-1]["spikes_per_image"] > 0 and state.history[0]["spikes_per_image"] is None
    assert set(model.state_dict()) == names
