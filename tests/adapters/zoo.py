"""Networks nobody here wrote, each with its framework's usual training recipe, and the plain PyTorch loop a user of
that framework would write to train them: what ``tests/adapters/test_zoo.py`` and ``bench/zoo.py`` compare
:func:`snnlth.find_ticket`'s dense round against.

=================  ==========================================================================================
``plif``           spikingjelly 2.0's zoo ``parametric_lif_net.FashionMNISTNet`` (PLIF neurons: a learnable
                   membrane time constant ``w`` per layer; ``VotingLayer`` averaging groups of 10 output spikes
                   into a firing rate per class), multi-step. spikingjelly's Fashion-MNIST recipe
                   (``examples/conv_fashion_mnist.py``, the PLIF paper's): Adam 1e-3, MSE between the output
                   firing rate (mean over T) and the one-hot labels, CosineAnnealingLR(T_max=epochs), T=4.
``sew``            spikingjelly's zoo ``sew_resnet.SEWResNet`` (BasicBlock, ADD connections, IF neurons) with one
                   block per stage, its first convolution for 1-channel images (nothing else changed).
                   spikingjelly's classification recipe (``examples/common/train_classify.py``): SGD 0.1,
                   momentum 0.9, no weight decay, cosine, cross-entropy of the output averaged over T, T=4; its
                   label smoothing (0.1) is left out (snnlth's losses have none) and its 5 warm-up epochs too
                   (longer than these runs).
``snntorch-conv``  snntorch tutorial 6's convolutional ``nn.Sequential`` (Leaky beta 0.5, fast sigmoid slope 25,
                   ``init_hidden=True``); Adam 1e-2, betas (0.9, 0.999), ``SF.ce_rate_loss()`` (the mean over t
                   of the cross-entropy of each step's output spikes: snnlth's ``ce``), constant lr, T=5
                   (the tutorial's 50 steps scaled down).
``snntorch-fc``    snntorch tutorial 5's fully connected net (784-hidden-10, Leaky beta 0.95) as an
                   ``nn.Sequential`` of hidden-state neurons, a ``Flatten`` first (the adapter feeds images);
                   Adam 5e-4, betas (0.9, 0.999), ``SF.ce_rate_loss()`` (the tutorial sums the cross-entropy of
                   the output *membrane* per step; the spikes' loss is snntorch's own for this net), T=5.
=================  ==========================================================================================

The plain loop sees exactly the batches of snnlth's dense round: the ``DataSource`` ``find_ticket`` makes of the
``(x, y)`` tensors, epoch e of round 0's stream with the search's seed; the global RNG is seeded as the search
seeds it before its dense round (spikingjelly's ``Dropout`` draws from it). Nothing here imports a framework at
module level: the tests skip cleanly without one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from snnlth.data.user import make_source
from snnlth.rng import STREAM

NUM_CLASSES = 10
Run = Callable[[nn.Module, torch.Tensor, int], torch.Tensor]  # (net, x [B, 1, 28, 28], T) -> outputs [T, B, 10]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs [T, B, 10], y [B]) -> scalar


@dataclass(frozen=True)
class Recipe:
    """A framework's training recipe: T, optimiser, lr, schedule, and the loss by its snnlth name."""

    timesteps: int
    optimizer: str  # "adam" | "sgd"
    lr: float
    loss: str  # snnlth's --loss of the recipe's loss
    schedule: str = "constant"  # "constant" | "cosine" (per epoch, T_max = epochs)
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    batch_size: int = 64

    def options(self, epochs: int, seed: int = 0) -> dict:
        """The recipe as :func:`snnlth.find_ticket` keywords (no weight decay, no warm-up: none of the recipes has
        them)."""
        return {"epochs": epochs, "timesteps": self.timesteps, "optimizer": self.optimizer, "lr": self.lr,
                "betas": self.betas, "momentum": self.momentum, "weight_decay": 0.0, "schedule": self.schedule,
                "warmup_epochs": 0, "loss": self.loss, "batch_size": self.batch_size, "seed": seed}


@dataclass(frozen=True)
class ZooNet:
    """One network: how to build it at a size, how its framework runs it, its recipe, and the user's loss."""

    name: str
    framework: str  # the package pytest.importorskip needs
    build: Callable[[int, int], nn.Module]  # (size, seed) -> network
    run: Run
    loss: Loss
    recipe: Recipe
    test_size: int  # width for the tests
    bench_size: int  # width for bench/zoo.py


# ---- the frameworks' own idioms ---------------------------------------------------------------------------------
def sj_run(net: nn.Module, x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """spikingjelly's multi-step idiom: ``reset_net``, the image repeated over T, one call -> ``[T, B, 10]``."""
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    return net(x.unsqueeze(0).repeat(timesteps, *(1,) * x.dim()))


def snntorch_run(net: nn.Module, x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """snntorch's idiom: reset the hidden state, feed the image at every step, stack the output spikes.

    Each neuron's own ``reset_mem()`` rather than ``snntorch.utils.reset(net)``: the latter resets the neurons in a
    class-wide list filled by ``__init__``, which a ``copy.deepcopy`` of a network never joins, so on a copy it
    resets nothing and the membranes (with their graph) run on into the next batch."""
    import snntorch as snn

    for m in net.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.reset_mem()
    return torch.stack([net(x)[0] for _ in range(timesteps)])


def mse_rate_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """spikingjelly's tutorials: ``F.mse_loss(out.mean(0), one_hot(y))``, the output firing rate against the
    label."""
    return F.mse_loss(out.mean(0), F.one_hot(y, NUM_CLASSES).float())


def ce_of_rate_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """spikingjelly's train_classify: ``cross_entropy(out.mean(0), y)``."""
    return F.cross_entropy(out.mean(0), y)


def snntorch_ce_rate_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """snntorch's ``SF.ce_rate_loss()``, as the tutorials call it."""
    import snntorch.functional as SF

    return SF.ce_rate_loss()(out, y)


# ---- the networks -----------------------------------------------------------------------------------------------
def plif_net(channels: int = 8, seed: int = 0) -> nn.Module:
    """spikingjelly's ``FashionMNISTNet`` with PLIF neurons (ATan surrogate, detached reset), multi-step."""
    from spikingjelly.activation_based import functional, neuron, surrogate
    from spikingjelly.activation_based.model import parametric_lif_net

    torch.manual_seed(seed)
    net = parametric_lif_net.FashionMNISTNet(channels=channels, spiking_neuron=neuron.ParametricLIFNode,
                                             surrogate_function=surrogate.ATan(), detach_reset=True)
    functional.set_step_mode(net, "m")
    return net


@contextlib.contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    """While importing spikingjelly's ResNet/VGG zoo modules: a stand-in for ``torchvision._internally_replaced_utils``
    when torchvision is missing. Those modules import torchvision at the top only for ``load_state_dict_from_url``
    (pretrained downloads, never used here), and torchvision cannot be installed next to this CPU build of torch;
    the stand-in's function raises if anything ever calls it. It leaves ``sys.modules`` again after the import."""
    name = "torchvision._internally_replaced_utils"
    if importlib.util.find_spec("torchvision") is not None or name in sys.modules:
        yield
        return
    stand_in = types.ModuleType(name)

    def load_state_dict_from_url(*_args, **_kwargs):
        raise RuntimeError("pretrained weights need torchvision, which is not installed")

    stand_in.load_state_dict_from_url = load_state_dict_from_url
    sys.modules[name] = stand_in
    try:
        yield
    finally:
        sys.modules.pop(name, None)


def sew_resnet_module() -> types.ModuleType:
    """``spikingjelly.activation_based.model.sew_resnet``, importable without torchvision."""
    with _torchvision_stand_in():
        from spikingjelly.activation_based.model import sew_resnet
    return sew_resnet


def sew_net(blocks: int = 1, seed: int = 0) -> nn.Module:
    """spikingjelly's ``SEWResNet`` (BasicBlock, ``blocks`` per stage, ADD, IF neurons, ATan, detached reset) for
    10 classes, its first convolution taking 1 channel (initialised as the zoo initialises its convolutions)."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    sew = sew_resnet_module()
    torch.manual_seed(seed)
    net = sew.SEWResNet(sew.BasicBlock, [blocks] * 4, num_classes=NUM_CLASSES, cnf="ADD", spiking_neuron=neuron.IFNode,
                        surrogate_function=surrogate.ATan(), detach_reset=True)
    net.conv1 = layer.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)  # grey images, not RGB
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    functional.set_step_mode(net, "m")
    return net


def snntorch_conv_net(width: int = 12, seed: int = 0) -> nn.Module:
    """snntorch tutorial 6's convnet: 5x5 convolutions of ``width`` and 64 channels (the tutorial: 12, 64)."""
    import snntorch as snn
    from snntorch import surrogate

    torch.manual_seed(seed)
    grad = surrogate.fast_sigmoid(slope=25)
    return nn.Sequential(
        nn.Conv2d(1, width, 5), nn.MaxPool2d(2), snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True),
        nn.Conv2d(width, 64, 5), nn.MaxPool2d(2), snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True),
        nn.Flatten(), nn.Linear(64 * 4 * 4, NUM_CLASSES),
        snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True, output=True))


def snntorch_fc_net(hidden: int = 1000, seed: int = 0) -> nn.Module:
    """snntorch tutorial 5's 784-``hidden``-10 network (the tutorial: 1000), hidden-state neurons, beta 0.95."""
    import snntorch as snn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), snn.Leaky(beta=0.95, init_hidden=True),
                         nn.Linear(hidden, NUM_CLASSES), snn.Leaky(beta=0.95, init_hidden=True, output=True))


ZOO = (
    ZooNet("plif", "spikingjelly", lambda size, seed: plif_net(size, seed), sj_run, mse_rate_loss,
           Recipe(4, "adam", 1e-3, "mse-rate", schedule="cosine"), test_size=8, bench_size=16),
    ZooNet("sew", "spikingjelly", lambda size, seed: sew_net(size, seed), sj_run, ce_of_rate_loss,
           Recipe(4, "sgd", 0.1, "ce-rate", schedule="cosine"), test_size=1, bench_size=1),
    ZooNet("snntorch-conv", "snntorch", lambda size, seed: snntorch_conv_net(size, seed), snntorch_run,
           snntorch_ce_rate_loss, Recipe(5, "adam", 1e-2, "ce"), test_size=8, bench_size=12),
    ZooNet("snntorch-fc", "snntorch", lambda size, seed: snntorch_fc_net(size, seed), snntorch_run,
           snntorch_ce_rate_loss, Recipe(5, "adam", 5e-4, "ce"), test_size=256, bench_size=1000),
)
BY_NAME = {z.name: z for z in ZOO}


# ---- the plain loop ---------------------------------------------------------------------------------------------
def dense_batches(train: tuple, test: tuple, batch_size: int, seed: int = 0) -> Callable[[int], Iterator]:
    """Epoch -> the training batches :func:`snnlth.find_ticket`'s dense round trains on: the source it makes of
    the ``(x, y)`` tensors, round 0's data stream, the search's seed."""
    source = make_source(train, test, torch.device("cpu"), NUM_CLASSES)
    return lambda epoch: source.train_batches(batch_size, seed, STREAM.round(0), epoch)


def make_optimizer(net: nn.Module, recipe: Recipe, fused: bool | None = None) -> torch.optim.Optimizer:
    """The recipe's optimiser, as a tutorial builds it. ``fused``: PyTorch's kernel choice (None: its default, what
    a tutorial gets; True: the fused kernel, which snnlth's trainer uses wherever it can: the same update rule,
    rounded differently)."""
    if recipe.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=recipe.lr, betas=recipe.betas, fused=fused)
    return torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum, fused=fused)


def train_plain(net: nn.Module, zoo: ZooNet, batches: Callable[[int], Iterator], epochs: int, seed: int = 0,
                fused: bool | None = None) -> float:
    """Train ``net`` in place, the way the framework's tutorial does: per batch, run (reset first), the recipe's
    loss, ``zero_grad``/``backward``/``step``; the scheduler stepped per epoch. ``fused``: see
    :func:`make_optimizer`. Returns the training seconds."""
    optimizer = make_optimizer(net, zoo.recipe, fused)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
                 if zoo.recipe.schedule == "cosine" else None)
    torch.manual_seed(seed)  # dropout's draws: as the search seeds the global RNG before its dense round
    seconds = 0.0
    for epoch in range(epochs):
        net.train()
        start = time.perf_counter()
        for x, y in batches(epoch):
            loss = zoo.loss(zoo.run(net, x, zoo.recipe.timesteps), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - start
        if scheduler is not None:
            scheduler.step()
    return seconds


@torch.no_grad()
def accuracy(net: nn.Module, zoo: ZooNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Test accuracy (percent) in eval mode, the prediction being the class with the most output over T."""
    net.eval()
    correct = 0
    for start in range(0, len(y), batch_size):
        out = zoo.run(net, x[start:start + batch_size], zoo.recipe.timesteps)
        correct += int((out.sum(0).argmax(-1) == y[start:start + batch_size]).sum())
    return 100.0 * correct / len(y)
