"""spikingjelly networks (``spikingjelly.activation_based``): single-step mode (the network is called once per step
on ``[B, ...]``) and multi-step mode (once on ``[T, B, ...]``), neuron state cleared with spikingjelly's own
``functional.reset_net`` before every batch."""

from __future__ import annotations

import torch
from torch import nn

from snnlth.adapters.base import Adapter
from snnlth.errors import ConfigError

INSTALL = ("spikingjelly is not installed: pip install 'snnlth[spikingjelly]' (or, to keep your own torch build, "
           "pip install loguru && pip install --no-deps spikingjelly)")


def _functional():
    try:
        from spikingjelly.activation_based import functional
    except ImportError:
        raise ConfigError(INSTALL) from None
    return functional


def step_modes(net: nn.Module) -> set[str]:
    """The ``step_mode`` of every spikingjelly module of ``net`` (``"s"``, ``"m"``)."""
    return {m.step_mode for m in net.modules() if isinstance(getattr(m, "step_mode", None), str)}


class SpikingJelly(Adapter):
    framework = "spikingjelly"

    def __init__(self, net: nn.Module, timesteps: int | None = None, *, step_mode: str | None = None, **kw) -> None:
        super().__init__(net, timesteps, **kw)
        _functional()  # installed?
        modes = step_modes(net)
        if step_mode is None:
            if len(modes) > 1:
                raise ConfigError("the network mixes single-step and multi-step spikingjelly modules; call "
                                  "functional.set_step_mode(net, 'm') (or 's') first, or pass step_mode=")
            step_mode = modes.pop() if modes else "s"
        if step_mode not in ("s", "m"):
            raise ConfigError(f"step_mode must be 's' or 'm' (got {step_mode!r})")
        self.step_mode = step_mode

    def run(self, x_seq: torch.Tensor, timesteps: int) -> torch.Tensor:
        if self.step_mode == "m":
            return self.readout(self.net(x_seq))
        return torch.stack([self.readout(self.net(x_seq[t])) for t in range(timesteps)])

    def reset(self) -> None:
        _functional().reset_net(self.net)


def spikingjelly(net: nn.Module, timesteps: int | None = None, *, step_mode: str | None = None, encode=None,
                 readout=None, init=None) -> SpikingJelly:
    """Adapt a spikingjelly network. ``step_mode``: ``"s"`` or ``"m"``, default the mode its modules are in (a
    multi-step network takes ``[T, B, ...]``, the encoded input). ``encode``, ``readout``, ``init``: see
    :class:`~snnlth.adapters.base.Adapter`."""
    return SpikingJelly(net, timesteps, step_mode=step_mode, encode=encode, readout=readout, init=init)
