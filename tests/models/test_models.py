import pytest
import torch

from snnlth.config import ModelConfig
from snnlth.models import create_model, list_models
from snnlth.models.protocol import SpikingNet

SIZES = {"convnet": (1, 28), "lenet300": (1, 28), "vgg16": (3, 32), "resnet19": (3, 32)}


def _counts(model: SpikingNet) -> tuple[int, int]:
    prunable = set(model.prunable_names())
    w = sum(p.numel() for n, p in model.named_parameters() if n in prunable)
    return w, sum(p.numel() for n, p in model.named_parameters() if n not in prunable)


def test_every_registered_model_is_tested():
    assert set(list_models()) == set(SIZES)


@pytest.mark.parametrize("name", sorted(SIZES))
@pytest.mark.parametrize("timesteps", [1, 2, 5])
def test_output_shape_per_timestep(name, timesteps):
    c, s = SIZES[name]
    model = create_model(ModelConfig(model=name), c, s, 7)
    out = model(torch.randn(2, c, s, s), timesteps)
    assert out.shape == (timesteps, 2, 7)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_gradient_reaches_every_parameter(name):
    c, s = SIZES[name]
    torch.manual_seed(0)
    model = create_model(ModelConfig(model=name, v_threshold=0.2), c, s, 10)
    x = torch.randn(4, c, s, s, generator=torch.Generator().manual_seed(1)) * 3
    y = torch.arange(4) % 10
    torch.nn.functional.cross_entropy(model(x, 2).sum(0), y).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    zero = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.abs().sum() > 0]
    assert not missing and not zero  # every parameter is reached by a non-zero gradient


@pytest.mark.parametrize("name", sorted(SIZES))
def test_ann_twin_has_same_parameter_names(name):
    c, s = SIZES[name]
    snn = create_model(ModelConfig(model=name), c, s, 10)
    ann = create_model(ModelConfig(model=name, neuron="relu"), c, s, 10)
    assert [n for n, _ in snn.named_parameters()] == [n for n, _ in ann.named_parameters()]
    out = ann(torch.randn(2, c, s, s), 3)
    assert out.shape == (3, 2, 10) and torch.equal(out[0], out[2])  # identical steps


@pytest.mark.parametrize("name,c,s,classes,weights,others", [
    ("vgg16", 3, 32, 10, 14_715_584, 12_682),      # the paper's code, CIFAR-10
    ("resnet19", 3, 32, 10, 12_619_968, 10_890),
    ("vgg16", 1, 28, 10, 14_715_584 - 2 * 9 * 64, 12_682),  # 28x28 F-MNIST variant: 1 input channel
    ("resnet19", 1, 28, 10, 12_619_968 - 2 * 9 * 64, 10_890),
    ("vgg16", 3, 32, 100, 14_715_584 + 90 * 512, 12_682 + 90),
])
def test_parameter_counts(name, c, s, classes, weights, others):
    assert _counts(create_model(ModelConfig(model=name), c, s, classes)) == (weights, others)


def test_vgg_28_runs_with_one_pool_less():
    model = create_model(ModelConfig(model="vgg16"), 1, 28, 10)
    assert sum(model.pool_after) == 4 and model(torch.randn(2, 1, 28, 28), 1).shape == (1, 2, 10)


def test_prunable_names_are_conv_and_linear_weights():
    model = create_model(ModelConfig(model="resnet19"), 3, 32, 10)
    names = model.prunable_names()
    assert names[0] == "conv1.weight" and names[-1] == "fc2.weight"
    assert "layer1.0.shortcut.0.weight" in names
    params = dict(model.named_parameters())
    assert all(params[n].dim() > 1 for n in names)
    assert not any(n.endswith("bias") or ".bn" in n for n in names)


def test_direct_coding_first_layer_runs_once():
    model = create_model(ModelConfig(model="convnet"), 1, 28, 10)
    calls = []
    model.blocks[0].register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    model(torch.randn(3, 1, 28, 28), 5)
    assert calls == [torch.Size([3, 1, 28, 28])]


def test_timesteps_default_and_invalid():
    model = create_model(ModelConfig(model="lenet300", timesteps=3), 1, 28, 10)
    assert model(torch.randn(2, 1, 28, 28)).shape[0] == 3
    with pytest.raises(ValueError, match="timesteps"):
        model(torch.randn(2, 1, 28, 28), 0)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_every_model_implements_the_protocol_and_reinitializes_like_a_fresh_build(name):
    from snnlth.models.protocol import TicketModel

    c, s = SIZES[name]
    torch.manual_seed(7)
    fresh = create_model(ModelConfig(model=name), c, s, 10)
    model = create_model(ModelConfig(model=name), c, s, 10)
    assert isinstance(model, TicketModel)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    state = torch.get_rng_state()
    model.reinitialize(7)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in model.state_dict().items())
    ident = model.identity()
    assert ident == fresh.identity() and ident["num_parameters"] == sum(p.numel() for p in model.parameters())
    other = create_model(ModelConfig(model=name), c, s, 7)
    assert other.identity()["parameters"] != ident["parameters"]


def test_input_coding_is_separable_from_the_body():
    model = create_model(ModelConfig(model="convnet"), 1, 28, 10).eval()
    x = torch.randn(3, 1, 28, 28)
    x_seq = model.encode(x, 4)
    assert x_seq.shape == (4, 3, 32, 28, 28) and torch.equal(x_seq[0], x_seq[3])  # direct coding: same current
    with torch.no_grad():
        assert torch.equal(model.body(x_seq), model(x, 4))


def test_plain_layout_undoes_an_ambiguous_channels_last_batch():
    from snnlth.models.protocol import plain_layout

    x = torch.rand(4, 8, 8, 1).permute(0, 3, 1, 2)  # contiguous in both layouts: the convolution picks channels-last
    assert x.stride() == (64, 1, 8, 1)
    y = plain_layout(x)
    assert y.stride() == (64, 64, 8, 1) and torch.equal(x, y)
    z = torch.rand(2, 3, 4, 4)
    assert plain_layout(z) is z  # already plain: no copy
