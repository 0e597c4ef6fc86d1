"""Small SNNs built in each framework (as a user of that framework would write them) and a tiny real Fashion-MNIST
subset, for the adapter tests and their kill-and-resume subprocess."""

from __future__ import annotations

import torch
from torch import nn

N_TRAIN, N_TEST = 256, 128


def fmnist_tensors(n_train: int = N_TRAIN, n_test: int = N_TEST):
    """Normalised ``(x, y)`` tensors of a stratified subset of the real Fashion-MNIST (Debian's package)."""
    from snnlth.config import DataConfig
    from snnlth.data.loader import load_data

    data = load_data(DataConfig(train_subset=n_train, test_subset=n_test, augment=False), torch.device("cpu"), seed=0)
    return next(data.eval_batches(n_train, "train")), next(data.eval_batches(n_test, "test"))


def sj_net(step_mode: str = "s", seed: int = 0) -> nn.Module:
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    torch.manual_seed(seed)
    net = nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1, bias=False), layer.BatchNorm2d(4),
        neuron.LIFNode(tau=4 / 3, surrogate_function=surrogate.ATan(), detach_reset=True), layer.MaxPool2d(4),
        layer.Flatten(), layer.Linear(4 * 7 * 7, 10))
    functional.set_step_mode(net, step_mode)
    return net


def snntorch_net(seed: int = 0) -> nn.Module:
    import snntorch as snn
    from snntorch import surrogate

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4),
        snn.Leaky(beta=0.75, init_hidden=True, spike_grad=surrogate.atan()), nn.MaxPool2d(4),
        nn.Flatten(), nn.Linear(4 * 7 * 7, 10),
        snn.Leaky(beta=0.75, init_hidden=True, output=True, spike_grad=surrogate.atan()))


class HandLIF(nn.Module):
    """A hand-written LIF layer with its own membrane state (what a stepwise network looks like)."""

    spiking_neuron = True  # how snnlth finds a hand-written neuron for spike counts

    def __init__(self) -> None:
        super().__init__()
        self.v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x if self.v is None else 0.75 * self.v + x
        surrogate = torch.sigmoid(4 * (v - 1.0))
        spike = (v >= 1.0).float() + (surrogate - surrogate.detach())  # exactly 0/1 forward, sigmoid backward
        self.v = v * (1 - spike.detach())
        return spike


class HandNet(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.lif = HandLIF()
        self.fc = nn.Linear(4 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif(self.bn(self.conv(x)))
        return self.fc(nn.functional.max_pool2d(s, 4).flatten(1))


def hand_step(net: HandNet, x_t: torch.Tensor) -> torch.Tensor:
    return net(x_t)


def hand_reset(net: HandNet) -> None:
    net.lif.v = None


class SeqLIF(nn.Module):
    """A multi-step LIF written by hand: ``[T, B, ...] -> [T, B, ...]`` spikes, its state local to the call."""

    spiking_neuron = True

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        v, out = torch.zeros_like(x_seq[0]), []
        for x in x_seq:
            v = 0.75 * v + x
            surrogate = torch.sigmoid(4 * (v - 1.0))
            spike = (v >= 1.0).float() + (surrogate - surrogate.detach())
            v = v * (1 - spike.detach())
            out.append(spike)
        return torch.stack(out)


class SeqNet(nn.Module):
    """A plain PyTorch SNN mapping ``[T, B, 1, 28, 28]`` to ``[T, B, 10]`` in one call."""

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.lif = SeqLIF()
        self.fc = nn.Linear(4 * 7 * 7, 10)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        t, b = x_seq.shape[:2]
        h = self.bn(self.conv(x_seq.flatten(0, 1))).view(t, b, 4, 28, 28)
        s = nn.functional.max_pool2d(self.lif(h).flatten(0, 1), 4).flatten(1)
        return self.fc(s).view(t, b, -1)
