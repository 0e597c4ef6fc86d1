"""NIR export: a ticket's graph, imported by spikingjelly 2.0.0's NIR importer (a simulator nobody here wrote), gives
snnlth's per-step logits and predictions on real Fashion-MNIST test images; leaving out any exact form of the export
(BatchNorm folding, the max-pool gate, the input normalisation, a bias) breaks that."""

import json

import pytest
import torch

import snnlth
from snnlth import nir_export
from snnlth.cli import main
from snnlth.config import DataConfig, ModelConfig, RuntimeConfig, SearchConfig, SearchRunConfig, TrainConfig
from snnlth.data.loader import load_data
from tests.helpers import one_line_error

nir = pytest.importorskip("nir")
T = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished 1-round search of each model on real Fashion-MNIST (a ticket with trained BatchNorm statistics)."""
    out = {}
    for model in ("convnet", "lenet300"):
        cfg = SearchRunConfig(DataConfig(train_subset=1000, test_subset=200), ModelConfig(model=model, timesteps=T),
                              TrainConfig(epochs=2, batch_size=50, lr=0.1), SearchConfig(rounds=1, prune_rate=0.5),
                              RuntimeConfig(device="cpu"))
        out[model] = snnlth.search(cfg, out=tmp_path_factory.mktemp(model) / "run")
    return out


@pytest.fixture(scope="module")
def images():
    """Raw test images in [0, 1], as an exported graph takes them."""
    data = load_data(DataConfig(train_subset=10, test_subset=200, augment=False), torch.device("cpu"), seed=0)
    return data.test_x.float() / 255


def _spikingjelly(graph, x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Per-step outputs ``[T, B, C]`` of ``graph`` run by spikingjelly's importer, one call per step with the state
    passed back (``state=None``: a fresh start), the same image at every step."""
    pytest.importorskip("nirtorch")
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    module = import_from_nir(graph, dt=1e-4, step_mode="s")
    state, outs = None, []
    with torch.no_grad():
        for _ in range(timesteps):
            y, state = module(x, state)
            outs.append(y)
    return torch.stack(outs)


def _snnlth(run, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return nir_export._ticket_of(run).model(x, T)


@pytest.mark.parametrize("model", ["convnet", "lenet300"])
def test_spikingjelly_runs_the_graph_as_snnlth_does(model, runs, images, tmp_path):
    graph = snnlth.to_nir(runs[model])
    nir_export.write_graph(graph, tmp_path / "t.nir")
    theirs = _spikingjelly(nir.read(str(tmp_path / "t.nir")), images, T)
    ours = _snnlth(runs[model], images)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    assert torch.equal(theirs.sum(0).argmax(1), ours.sum(0).argmax(1))
    assert runs[model].best.accuracy > 50 and ours.sum(0).argmax(1).unique().numel() > 5  # a network that answers


_BREAKS = {
    "bn folding": lambda mp: mp.setattr(nir_export, "fold_bn", lambda w, b, bn: (nir_export._np(w), nir_export._np(
        b if b is not None else torch.zeros(w.shape[0])))),
    "pool gate": lambda mp: mp.setattr(nir_export, "_pool_gate", lambda nir_mod, g, name, shape, dt: g.add(
        f"{name}_sum", nir_mod.SumPool2d(kernel_size=torch.tensor([2, 2]).numpy(),
                                         stride=torch.tensor([2, 2]).numpy(), padding=torch.tensor([0, 0]).numpy()))),
    "normalisation": lambda mp: mp.setattr(nir_export, "_normalize", lambda *a: None),
    "a bias": lambda mp: mp.setattr(nir_export, "_np", _drop_classifier_bias(nir_export._np)),
}


def _drop_classifier_bias(np_of):
    def np_(t):
        out = np_of(t)
        return out * 0 if out.ndim == 1 and out.shape[0] == 10 else out  # the readout's bias (10 classes)

    return np_


@pytest.mark.parametrize("broken", list(_BREAKS))
def test_the_round_trip_catches_a_missing_form(broken, runs, images, monkeypatch):
    model = "lenet300" if broken == "a bias" else "convnet"
    _BREAKS[broken](monkeypatch)
    theirs = _spikingjelly(snnlth.to_nir(runs[model]), images, T)
    ours = _snnlth(runs[model], images)
    assert not torch.allclose(theirs, ours, atol=1e-4, rtol=1e-4), broken


def test_metadata_and_cli(runs, tmp_path, capsys):
    run = runs["convnet"].run_dir
    assert main(["export", str(run), "--format", "nir", "--out", str(tmp_path / "t.nir"), "--timesteps", "2"]) == 0
    graph = nir.read(str(tmp_path / "t.nir"))
    meta = {k: json.loads(v) if k != "tie_rule" else v for k, v in graph.metadata.items()}
    assert meta["timesteps"] == 2 and meta["dt"] == 1e-4 and "V >= V_th" in meta["tie_rule"]
    assert meta["sparsity_prunable"] == pytest.approx(0.5, abs=1e-3) and set(meta["sparsity_per_layer"]) == {
        "blocks.0.0.weight", "blocks.1.0.weight", "blocks.2.0.weight", "classifier.weight"}
    assert meta["run"]["model"]["model"] == "convnet" and "summed over the T steps" in meta["readout"]
    lif = graph.nodes["lif1"]
    assert lif.v_threshold.max() < 1.0 and lif.v_threshold.min() == pytest.approx(1.0)  # one float32 step below
    assert lif.tau.shape == (64, 14, 14) and float(lif.tau.flat[0]) == pytest.approx(4 / 3 * 1e-4)
    weights = graph.nodes["conv1"].weight
    assert (weights == 0).mean() > 0.3  # the ticket's zeros survive the BatchNorm folding
    capsys.readouterr()
    assert main(["export", str(run), "--format", "nir", "--out", str(tmp_path / "u.nir"), "--dt", "0"]) == 2
    assert "dt must be > 0" in one_line_error(capsys) and not (tmp_path / "u.nir").exists()
