"""NIR export: a ticket's graph, imported by spikingjelly 2.0.0's NIR importer (a simulator nobody here wrote), gives
snnlth's per-step logits and predictions on real Fashion-MNIST test images, for every architecture and for adapted
spikingjelly networks; leaving out any exact form of the export (BatchNorm folding, the max-pool gate, the input
normalisation, a bias, a residual shortcut) breaks that. snntorch 1.0.0's importer runs the fully connected ticket.

Deep networks are compared in float64 (the same graph written with float64 arrays, both simulators in float64): in
float32 the folded BatchNorm rounds differently from BN after the conv, and a membrane within a rounding step of the
threshold flips a spike that then travels through the following layers (measured and bounded below)."""

import contextlib
import copy
import io
import json

import numpy as np
import pytest
import torch

import snnlth
from snnlth import nir_export
from snnlth.cli import main
from snnlth.config import DataConfig, ModelConfig, RuntimeConfig, SearchConfig, SearchRunConfig, TrainConfig
from snnlth.data.loader import load_data
from snnlth.errors import ConfigError
from snnlth.interchange import nodes
from snnlth.models.catalog import create_model
from snnlth.models.protocol import Normalize
from snnlth.snn.neuron import LIF, is_spiking_neuron
from tests.adapters import nets
from tests.helpers import one_line_error, spikingjelly_nir

nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")
T = 3


def _search(model: str, out, **model_kw):
    cfg = SearchRunConfig(DataConfig(train_subset=1000, test_subset=200),
                          ModelConfig(model=model, timesteps=T, **model_kw),
                          TrainConfig(epochs=2, batch_size=50, lr=0.1), SearchConfig(rounds=1, prune_rate=0.5),
                          RuntimeConfig(device="cpu"))
    return snnlth.search(cfg, out=out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished 1-round search of each small model on real Fashion-MNIST (a ticket with trained BatchNorm
    statistics)."""
    return {model: _search(model, tmp_path_factory.mktemp(model) / "run") for model in ("convnet", "lenet300")}


@pytest.fixture(scope="module")
def data():
    return load_data(DataConfig(train_subset=128, test_subset=200, augment=False), torch.device("cpu"), seed=0)


@pytest.fixture(scope="module")
def images(data):
    """Raw test images in [0, 1], as an exported graph takes them."""
    return data.test_x.float() / 255


def _calibrated(net: torch.nn.Module, run, x: torch.Tensor, scale: tuple[str, ...] = ()) -> torch.nn.Module:
    """A constructed ticket of ``net``: half of every prunable tensor pruned by magnitude, BatchNorm statistics the
    mean over real training images ``x``, the layers named in ``scale`` ×30 (at init the fully connected heads are
    too small to fire or to separate classes); in eval mode."""
    params = dict(net.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            if name.endswith("weight") and p.dim() > 1:
                p.mul_(p.abs() > p.abs().flatten().kthvalue(p.numel() // 2).values)
            if any(name.startswith(f"{prefix}.") for prefix in scale):
                p.mul_(30)
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # a plain mean over the calibration batches
        net.train()
        run(net, x)
    return net.eval()


@pytest.fixture(scope="module")
def deep(data):
    """The 28 px vgg16 and resnet19 (direct input, as trained on Fashion-MNIST without --resize) as constructed
    tickets (:func:`_calibrated`): training them on CPU in a test would take minutes."""
    out = {}
    for name, scale in (("vgg16", ("classifier",)), ("resnet19", ("fc1", "fc2"))):
        torch.manual_seed(0)
        model = create_model(ModelConfig(model=name, timesteps=T), 1, 28, 10)
        model.input_transform = Normalize((0.5,), (0.5,))
        out[name] = _calibrated(model, lambda m, x: m(x, T), data.train_x[:64].float() / 255, scale)
    return out


def _in_float64(monkeypatch) -> None:
    """The export's arrays and thresholds in float64 (the forms unchanged)."""
    monkeypatch.setattr(nodes, "_np", lambda t: t.detach().cpu().double().numpy())
    monkeypatch.setattr(nodes, "below", lambda v: np.nextafter(np.float64(v), -np.inf))


@pytest.fixture
def float64_graph(monkeypatch):
    _in_float64(monkeypatch)


def _spikingjelly(graph, x: torch.Tensor, timesteps: int, dtype=torch.float32) -> torch.Tensor:
    return spikingjelly_nir(graph, x, timesteps, dtype)


def _snnlth(run, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return nir_export._ticket_of(run).model(x, T)


def _agree(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.sum(0).argmax(1) == b.sum(0).argmax(1)).float().mean().item()


@pytest.mark.parametrize("model", ["convnet", "lenet300"])
def test_spikingjelly_runs_the_graph_as_snnlth_does(model, runs, images, tmp_path, monkeypatch):
    graph = snnlth.to_nir(runs[model])
    nir_export.write_graph(graph, tmp_path / "t.nir")
    theirs = _spikingjelly(nir.read(str(tmp_path / "t.nir")), images, T)
    ours = _snnlth(runs[model], images)
    assert _close_per_image(theirs, ours) >= 0.95 and _agree(theirs, ours) >= 0.98  # float32: rare flips (module doc)
    assert runs[model].best.accuracy > 50 and ours.sum(0).argmax(1).unique().numel() > 5  # a network that answers
    _in_float64(monkeypatch)
    model64 = copy.deepcopy(nir_export._ticket_of(runs[model]).model).double()
    with torch.no_grad():
        ours64 = model64(images.double(), T)
    torch.testing.assert_close(_spikingjelly(snnlth.to_nir(runs[model]), images, T, torch.float64), ours64,
                               atol=1e-9, rtol=1e-9)


def _close_per_image(theirs: torch.Tensor, ours: torch.Tensor, atol: float = 1e-4) -> float:
    """The fraction of images whose per-step logits all agree within ``atol``."""
    return ((theirs - ours).abs().flatten(2).amax(dim=(0, 2)) <= atol).float().mean().item()


def _spiking_layers(model: torch.nn.Module, x: torch.Tensor, timesteps: int) -> dict[str, float]:
    """Spikes per image of every LIF layer of ``model`` on ``x``."""
    counts, handles = {}, []
    for name, m in model.named_modules():
        if is_spiking_neuron(m):
            handles.append(m.register_forward_hook(
                lambda _m, _i, out, name=name: counts.__setitem__(name, float(out.sum()) / len(x))))
    with torch.no_grad():
        model(x, timesteps)
    for h in handles:
        h.remove()
    return counts


@pytest.mark.parametrize("name", ["vgg16", "resnet19"])
def test_deep_tickets_run_alike_in_spikingjelly(name, deep, images, monkeypatch):
    model, x = deep[name], images[:24]
    spikes = _spiking_layers(model, x, T)
    assert len(spikes) == sum(isinstance(m, LIF) for m in model.modules()) and min(spikes.values()) > 0, spikes
    graph32 = snnlth.to_nir(model, input_shape=(1, 28, 28))
    ours32, theirs32 = model(x, T).detach(), _spikingjelly(graph32, x, T)
    assert _agree(ours32, theirs32) >= 0.9  # float32: a flipped spike near the threshold may change a prediction
    _in_float64(monkeypatch)
    ours = copy.deepcopy(model).double()(x.double(), T).detach()
    theirs = _spikingjelly(snnlth.to_nir(model, input_shape=(1, 28, 28)), x, T, torch.float64)
    torch.testing.assert_close(theirs, ours, atol=1e-9, rtol=1e-9)
    assert ours.sum(0).argmax(1).unique().numel() > 2


def test_resnet_shortcuts_are_edges_into_the_block_neuron(deep, images, float64_graph):
    """The block's last neuron sums two edges: BN(conv2) and the shortcut (the block's input spikes, or a folded
    1×1 conv). Without the identity edges, or with the projections zeroed, the imported ResNet differs."""
    model, x = deep["resnet19"], images[:8]
    graph = snnlth.to_nir(model, input_shape=(1, 28, 28))
    into = [(a, b) for a, b in graph.edges if b.endswith("_lif2") and not a.endswith("_conv2")]
    identity = [(a, b) for a, b in into if not a.endswith("_shortcut")]
    assert len(into) == 8 and len(identity) == 5 and all(a.endswith("lif2") or a == "lif_input" for a, _ in identity)
    ours = copy.deepcopy(model).double()(x.double(), T).detach()
    torch.testing.assert_close(_spikingjelly(graph, x, T, torch.float64), ours, atol=1e-9, rtol=1e-9)
    cut = nir.NIRGraph(nodes=graph.nodes, edges=[e for e in graph.edges if e not in identity],
                       metadata=graph.metadata)
    assert not torch.allclose(_spikingjelly(cut, x, T, torch.float64), ours, atol=1e-4)
    for name, node in graph.nodes.items():
        if name.endswith("_shortcut"):
            node.weight[...] = 0
    assert not torch.allclose(_spikingjelly(graph, x, T, torch.float64), ours, atol=1e-4)


_FOLD = nodes.fold_bn
_BREAKS = {
    "bn folding": lambda mp: mp.setattr(nodes, "fold_bn", lambda w, b, bn: _FOLD(w, b, None)),
    "pool gate": lambda mp: mp.setattr(nodes, "pool_gate", _sum_only),
    "normalisation": lambda mp: mp.setattr(nodes, "normalize", lambda *a: None),
    "a bias": lambda mp: mp.setattr(nodes, "_np", _drop_classifier_bias(nodes._np)),
}


def _sum_only(nir_mod, g, name, shape, dt, kernel=2, stride=2):
    """The max-pool without its gate."""
    g.add(f"{name}_sum", nir_mod.SumPool2d(kernel_size=np.array([kernel, kernel]), stride=np.array([stride, stride]),
                                          padding=np.array([0, 0])))


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


def test_a_membrane_exactly_at_the_threshold_fires_under_nirs_strict_rule():
    """snnlth fires at V >= V_th, NIR at V > V_th: inputs built so that the first charge ``X/τ`` is exactly V_th
    fire in snnlth, and fire under NIR's rule with the exported threshold; with V_th written as it is they would
    not."""
    lif = LIF(tau=4 / 3, v_threshold=1.0)
    near = torch.tensor(4 / 3, dtype=torch.float32)
    x = torch.stack([near + k * (torch.nextafter(near, torch.tensor(2.0)) - near) for k in range(-8, 9)])
    charge = torch.mul(x, lif.params.gain)  # snnlth's first-step membrane
    ties = charge == 1.0
    assert ties.any() and (charge < 1.0).any() and (charge > 1.0).any()
    fired = lif(x.view(1, -1)).flatten().bool()
    assert torch.equal(fired, charge >= 1.0)
    node = nodes.lif(nir, (len(x),), 1e-4, lif.tau, lif.v_threshold)
    assert torch.equal(fired, charge > torch.from_numpy(node.v_threshold))  # NIR's rule, the exported threshold
    assert not torch.equal(fired, charge > 1.0)  # the threshold as it is misses the ties


def test_snntorch_imports_the_fully_connected_ticket(runs, images):
    """snntorch 1.0.0's importer (dt fixed at 1e-4, thresholds rescaled by r·dt/τ, firing at >) runs lenet300's
    graph; its Flatten(0, -1) also flattens the batch, so it runs one image at a time."""
    snntorch_nir = pytest.importorskip("snntorch.import_nir")
    import snntorch.utils

    with contextlib.redirect_stdout(io.StringIO()):  # its threshold rescaling prints per layer
        module = snntorch_nir.import_from_nir(snnlth.to_nir(runs["lenet300"]))
    x, outs = images[:100], []
    with torch.no_grad():
        for i in range(len(x)):
            snntorch.utils.reset(module)
            outs.append(torch.stack([_first(module(x[i:i + 1])).reshape(-1) for _ in range(T)]))
    theirs, ours = torch.stack(outs, 1), _snnlth(runs["lenet300"], x)
    assert _close_per_image(theirs, ours) >= 0.95 and _agree(theirs, ours) >= 0.98  # float32, its own rounding


def _first(out):
    return out[0] if isinstance(out, tuple) else out  # its graph module may return (output, state)


def _sj_run(net, x):
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    return net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))


def test_spikingjelly_zoo_network_round_trips(data, images, float64_graph):
    """spikingjelly's own zoo FashionMNISTNet (PLIF neurons, multi-step, Dropout, VotingLayer) as a ticket."""
    pytest.importorskip("spikingjelly")
    from snnlth.adapters import spikingjelly

    net = _calibrated(_plif_net(), _sj_run, data.train_x[:64].float() / 255, ("conv_fc.10", "conv_fc.13"))
    x = images[:32]
    graph = snnlth.to_nir(spikingjelly(net, T), input_shape=(1, 28, 28))
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"Conv2d", "LIF", "SumPool2d", "IF", "Linear"}
    with torch.no_grad():
        ours = _sj_run(copy.deepcopy(net).double(), x.double())
    theirs = _spikingjelly(graph, x, T, torch.float64)
    torch.testing.assert_close(theirs, ours, atol=1e-9, rtol=1e-9)
    assert ours.abs().sum() > 0


def _plif_net():
    from tests.adapters.zoo import plif_net

    return plif_net(channels=8)


def test_a_find_ticket_result_exports(tmp_path, float64_graph):
    """The ticket of a search of a user's single-step spikingjelly network, exported from the search's result."""
    pytest.importorskip("spikingjelly")
    from snnlth.adapters import spikingjelly

    (xtr, ytr), (xte, yte) = nets.fmnist_tensors()
    result = snnlth.find_ticket(nets.sj_net("s"), (xtr, ytr), (xte, yte), timesteps=T, epochs=1, rounds=1,
                                batch_size=64, out=tmp_path / "run", progress=False)
    graph = snnlth.to_nir(result, input_shape=(1, 28, 28))
    meta = {k: json.loads(v) for k, v in graph.metadata.items()}
    assert meta["sparsity_prunable"] == pytest.approx(result.best.sparsity) and meta["timesteps"] == T
    net = copy.deepcopy(result.apply()).double()
    with torch.no_grad():
        ours = spikingjelly(net, T)(xte.double(), T)
    torch.testing.assert_close(_spikingjelly(graph, xte, T, torch.float64), ours, atol=1e-9, rtol=1e-9)
    with pytest.raises(ConfigError, match="input_shape"):
        snnlth.to_nir(result)
    assert main(["export", str(result.run_dir), "--format", "nir", "--out", str(tmp_path / "t.nir")]) == 2
    assert not (tmp_path / "t.nir").exists()


def test_exporting_leaves_the_network_and_the_random_stream_as_they_were():
    """A chain that ends in a neuron (spikingjelly's MNIST example): exported, its output node of the neuron's
    size; the network keeps its mode and no membrane of the probe; the global random stream is not drawn from."""
    from spikingjelly.activation_based import layer, neuron

    from snnlth.adapters import spikingjelly

    net = torch.nn.Sequential(layer.Flatten(), layer.Linear(784, 10), neuron.LIFNode(tau=2.0)).train()
    rng = torch.get_rng_state()
    graph = snnlth.to_nir(net, input_shape=(1, 28, 28))
    assert torch.equal(torch.get_rng_state(), rng) and net.training and isinstance(net[2].v, float)
    assert list(graph.nodes["output"].output_type["output"]) == [10] and type(graph.nodes["2"]).__name__ == "LIF"
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        ours = spikingjelly(net.eval(), T)(x * 3, T)
    torch.testing.assert_close(_spikingjelly(graph, x * 3, T), ours)


def test_a_layer_without_nir_form_is_named_in_one_line(tmp_path, capsys):
    from spikingjelly.activation_based import layer, neuron

    from tests.adapters.zoo import sew_net

    net = torch.nn.Sequential(layer.Conv2d(1, 4, 3, padding=1), neuron.LIFNode(), torch.nn.ReLU(), layer.Flatten(),
                              layer.Linear(4 * 28 * 28, 10))
    with pytest.raises(ConfigError, match=r"layer 2 \(ReLU\) has no NIR form") as err:
        snnlth.to_nir(net, input_shape=(1, 28, 28))
    assert "\n" not in str(err.value)
    soft = torch.nn.Sequential(layer.Flatten(), layer.Linear(784, 10), neuron.LIFNode(v_reset=None))
    with pytest.raises(ConfigError, match=r"neuron 2 \(LIFNode\) has a soft reset"):
        snnlth.to_nir(soft, input_shape=(1, 28, 28))
    with pytest.raises(ConfigError, match=r"neuron 2 \(Leaky\) has no NIR form"):  # snntorch's subtract reset
        snnlth.to_nir(nets.snntorch_net(), input_shape=(1, 28, 28))
    for pool in (layer.AvgPool2d(2, ceil_mode=True), layer.AvgPool2d(2, divisor_override=3)):
        with pytest.raises(ConfigError, match=r"avg-pool 1 uses ceil_mode, divisor_override"):
            snnlth.to_nir(torch.nn.Sequential(layer.Conv2d(1, 2, 3), pool, layer.Flatten(), layer.Linear(338, 10)),
                          input_shape=(1, 28, 28))
    with pytest.raises(ConfigError, match="not fed by"):  # SEW-ResNet adds its shortcuts in its forward
        snnlth.to_nir(sew_net(), input_shape=(1, 28, 28))
    twin = _search("convnet", tmp_path / "ann", neuron="relu").run_dir
    capsys.readouterr()
    assert main(["export", str(twin), "--format", "nir", "--out", str(tmp_path / "t.nir")]) == 2
    assert "neuron 0 is a SeqReLU, which has no NIR form" in one_line_error(capsys)
    assert not (tmp_path / "t.nir").exists()


def test_metadata_and_cli(runs, tmp_path, capsys):
    run = runs["convnet"].run_dir
    assert main(["export", str(run), "--format", "nir", "--out", str(tmp_path / "t.nir"), "--timesteps", "2"]) == 0
    graph = nir.read(str(tmp_path / "t.nir"))
    meta = {k: json.loads(v) for k, v in graph.metadata.items()}
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
