"""The graphed training step's bookkeeping, on CPU through an emulation of CUDA graphs (capture runs the step once;
replay runs it again and writes into the captured outputs and gradients, as a real replay overwrites static
memory). The real capture runs on GPUs only (bench/gpu_probe.py checks it against the eager step there)."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from snnlth.config import ModelConfig, TrainConfig
from snnlth.engine.evaluate import seq_loss
from snnlth.engine.graphed import GraphedStep, graph_blocker
from snnlth.engine.optim import make_optimizer
from snnlth.models import create_model


class EmulatedGraphs:
    device_type = "cpu"

    def __init__(self) -> None:
        self.replays = 0

    def side_stream(self):
        return contextlib.nullcontext()

    def capture(self, fn, params):
        out = fn()
        return (fn, out, params, [p.grad for p in params]), out

    def replay(self, graph) -> None:
        """Writes the step's results into the captured tensors only, as a real replay does: whatever ``p.grad``
        points to afterwards is the caller's business."""
        fn, (loss, logits), params, static = graph
        before = [p.grad for p in params]
        for p in params:
            p.grad = None
        new_loss, new_logits = fn()
        loss.copy_(new_loss)
        logits.copy_(new_logits)
        for p, g, old in zip(params, static, before):
            g.copy_(p.grad)
            p.grad = old
        self.replays += 1


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return create_model(ModelConfig(model="convnet"), 1, 28, 10)


def _batches(n: int, sizes=None):
    gen = torch.Generator().manual_seed(3)
    sizes = sizes or [16] * n
    return [(torch.randn(b, 1, 28, 28, generator=gen), torch.randint(0, 10, (b,), generator=gen)) for b in sizes]


def _train(model, batches, graph: GraphedStep | None, timesteps: int = 3):
    opt = make_optimizer(model, TrainConfig(lr=0.05))
    losses = []
    for x, y in batches:
        got = graph.step(x, y, timesteps) if graph is not None else None
        if got is None:
            loss = seq_loss(model(x, timesteps), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        else:
            loss = got[0]
        losses.append(float(loss.detach()))
        opt.step()
    return losses


def test_graphed_training_equals_eager_with_ragged_batch_and_bn_statistics():
    eager, graphed = _model(), _model()
    batches = _batches(5, sizes=[16, 16, 16, 9, 16])  # a ragged batch in the middle runs eagerly
    backend = EmulatedGraphs()
    step = GraphedStep(graphed, graphed, amp=False, backend=backend)
    want = _train(eager, batches, None)
    got = _train(graphed, batches, step)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert step.captures == 1 and backend.replays == 4  # the 9-image batch ran eagerly, the graph was kept
    for (name, a), b in zip(eager.state_dict().items(), graphed.state_dict().values()):
        # weights, and BatchNorm running statistics: the warm-up runs left no trace
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)


def test_new_parameter_storage_or_timesteps_capture_anew():
    model = _model()
    step = GraphedStep(model, model, amp=False, backend=EmulatedGraphs())
    (x, y), = _batches(1)
    step.step(x, y, 3)
    step.step(x, y, 3)
    assert step.captures == 1
    step.step(x, y, 2)  # Early-Time: another T
    assert step.captures == 2
    first = next(model.parameters())
    first.data = first.data.clone()  # a rewind that swapped the tensor instead of copying into it
    loss, _ = step.step(x, y, 2)
    assert step.captures == 3
    assert first.grad is not None and first.grad.data_ptr() != 0
    want = seq_loss(copy.deepcopy(model)(x, 2), y)
    assert float(loss) == pytest.approx(float(want.detach()), rel=1e-5)


def test_capture_failure_warns_once_and_leaves_the_step_to_the_caller():
    class Broken(EmulatedGraphs):
        def capture(self, fn, params):
            raise RuntimeError("operation not permitted when stream is capturing")

    model = _model()
    before = copy.deepcopy(model.state_dict())
    step = GraphedStep(model, model, amp=False, backend=Broken())
    (x, y), = _batches(1)
    with pytest.warns(RuntimeWarning, match="cannot be captured.*not permitted"):
        assert step.step(x, y, 3) is None
    assert step.step(x, y, 3) is None  # no second warning, no retry
    for k, v in model.state_dict().items():  # the warm-up's BatchNorm updates were undone
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_graph_blocker_names_why():
    model = _model()
    assert "CUDA" in graph_blocker(model, torch.device("cpu"), False)
    assert "data-parallel" in graph_blocker(model, torch.device("cuda"), True)
    assert graph_blocker(model, torch.device("cuda"), False) is None
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    model.neurons[0] = sj.LIFNode()
    assert "stateful neuron" in graph_blocker(model, torch.device("cuda"), False)


def test_train_epoch_with_a_graphed_step_trains_as_the_eager_loop(fmnist_dir):
    """The engine's epoch (ragged last batch, masks enforced) gives the same row and weights replayed or eager."""
    from snnlth import masks as M
    from snnlth.config import DataConfig
    from snnlth.data import load_data
    from snnlth.engine.loop import EpochSpec, FitSettings, Stepper, train_epoch
    from snnlth.engine.masking import MaskEnforcer

    data = load_data(DataConfig(), torch.device("cpu"), data_dir=str(fmnist_dir))
    cfg = TrainConfig(batch_size=64, lr=0.05)  # 200 images: three batches of 64 and one of 8
    rows, states = [], []
    for graphed in (False, True):
        model = _model()
        weights = {n: model.get_submodule(n.rsplit(".", 1)[0]).weight.detach() for n in model.prunable_names()}
        enforcer = MaskEnforcer(model, M.mask_at_sparsity(weights, 0.5))
        opt = make_optimizer(model, cfg)
        backend = EmulatedGraphs()
        step = GraphedStep(model, model, amp=False, backend=backend) if graphed else None
        rows.append(train_epoch(model, opt, data, Stepper(FitSettings(cfg), model, step, enforcer), EpochSpec(0, 1, 3)))
        states.append(model.state_dict())
        if graphed:
            assert backend.replays == 3 and step.captures == 1
    assert rows[1]["train_loss"] == pytest.approx(rows[0]["train_loss"], rel=1e-5)
    assert rows[1]["train_accuracy"] == rows[0]["train_accuracy"]
    for (name, a), b in zip(states[0].items(), states[1].values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)


def test_a_module_hook_sends_the_step_to_the_eager_path():
    """A hook would run while capturing and never on a replay: with one registered the step runs eagerly."""
    model = _model()
    step = GraphedStep(model, model, amp=False, backend=EmulatedGraphs())
    (x, y), = _batches(1)
    seen = []
    handle = model.neurons[1].register_forward_hook(lambda *a: seen.append(1))
    assert step.step(x, y, 3) is None and step.captures == 0 and seen == []
    handle.remove()
    assert step.step(x, y, 3) is not None and step.captures == 1
