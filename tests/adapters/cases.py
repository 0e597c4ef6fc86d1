"""Per framework: how to build the network, adapt it, and run it in its own framework afterwards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from tests.adapters import nets


def _sj_own(net, x, t):
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    if net[0].step_mode == "m":
        return net(x.unsqueeze(0).repeat(t, 1, 1, 1, 1)).sum(0)
    return sum(net(x) for _ in range(t))


def _snntorch_own(net, x, t):
    from snntorch import utils

    utils.reset(net)
    return sum(net(x)[0] for _ in range(t))


def _hand_own(net, x, t):
    nets.hand_reset(net)
    return sum(net(x) for _ in range(t))


def _seq_own(net, x, t):
    return net(x.unsqueeze(0).repeat(t, 1, 1, 1, 1)).sum(0)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], torch.nn.Module]
    adapt: Callable[[torch.nn.Module, int], object]  # the explicit adapter
    own: Callable[[torch.nn.Module, torch.Tensor, int], torch.Tensor]  # summed outputs, in its own framework
    auto: bool = True  # find_ticket adapts the bare network by itself


def _cases() -> list[Case]:
    from snnlth import adapters

    return [
        Case("spikingjelly-single", lambda: nets.sj_net("s"), lambda n, t: adapters.spikingjelly(n, t), _sj_own),
        Case("spikingjelly-multi", lambda: nets.sj_net("m"), lambda n, t: adapters.spikingjelly(n, t), _sj_own),
        Case("snntorch", nets.snntorch_net, lambda n, t: adapters.snntorch(n, t), _snntorch_own),
        Case("stepwise", nets.HandNet,
             lambda n, t: adapters.stepwise(n, nets.hand_step, nets.hand_reset, timesteps=t), _hand_own,
             auto=False),
        Case("multistep", nets.SeqNet, lambda n, t: adapters.multistep(n, t), _seq_own),
    ]


CASES = _cases()
