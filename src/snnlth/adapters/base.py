"""The adapter: a user's network seen through snnlth's model protocol (``model(x, T) -> [T, B, classes]``,
``reset()``, ``prunable_names()``, ``reinitialize(seed)``, ``identity()``), without editing or copying it.

An adapter *shares* the user's module tables (submodules, parameters, buffers): its ``state_dict`` keys, parameter
names and masks are exactly the user's, a mask applied through the adapter is a zero inside the user's own
parameters, and ``.to(device)`` moves the user's network too. Subclasses only say how to run T steps
(:meth:`Adapter.run`) and how to clear neuron state (:meth:`Adapter.reset`).
"""

from __future__ import annotations

import abc
import copy
import hashlib
from collections.abc import Callable

import torch
from torch import nn

from snnlth.errors import ConfigError
from snnlth.models.protocol import model_identity

Encoder = Callable[[torch.Tensor, int], torch.Tensor]  # (x [B, ...], T) -> x_seq [T, B, ...]
Readout = Callable[[object], torch.Tensor]  # what a step (or the whole run) returned -> logits

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def direct(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Direct input coding: the static input repeated at every step, ``[B, ...] -> [T, B, ...]`` (a view)."""
    return x.unsqueeze(0).expand(timesteps, *x.shape)


def first_output(out: object) -> torch.Tensor:
    """The logits of what a network returned: the tensor itself, or the first element of a tuple (snntorch's
    ``(spikes, membrane)``)."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"the model returned {type(out).__name__}, not a tensor of logits; pass readout=... to pick "
                          "the logits out of it")
    return out


class Adapter(nn.Module, metaclass=abc.ABCMeta):
    """Base of every adapter (see the module docstring). ``timesteps`` is the default T; every call may give
    another (Early-Time searches at fewer steps). ``encode`` turns the input batch into the step inputs
    (default :func:`direct`); ``readout`` picks the logits out of what the network returns (default
    :func:`first_output`); ``init`` re-initialises the network for the reinit baseline after every layer's own
    ``reset_parameters`` (default: nothing more)."""

    framework = "torch"

    def __init__(self, net: nn.Module, timesteps: int | None = None, *, encode: Encoder | None = None,
                 readout: Readout | None = None, init: Callable[[nn.Module], None] | None = None) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ConfigError(f"the model is a {type(net).__name__}, not a torch.nn.Module; pass the network itself")
        if isinstance(net, Adapter):
            raise ConfigError("the model is already wrapped by an adapter; pass it directly")
        if timesteps is not None and (not isinstance(timesteps, int) or timesteps < 1):
            raise ConfigError(f"timesteps must be a positive int (got {timesteps!r})")
        for name in ("_modules", "_parameters", "_buffers", "_non_persistent_buffers_set"):
            self.__dict__[name] = net.__dict__[name]  # the same tables: one set of parameters, the user's
        for name, fn in (("encode", encode), ("readout", readout), ("init", init)):
            _check_callable(name, fn)
        self._plain(net=net, timesteps=timesteps, encode=encode or direct, readout=readout or first_output,
                    init=init)

    def _plain(self, **attrs) -> None:
        """Set attributes without nn.Module registering them: ``net`` (its children are ours already) or an encoder
        that is a module would otherwise land in the user's own submodule table."""
        for name, value in attrs.items():
            object.__setattr__(self, name, value)

    # ---- the protocol ----------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, timesteps: int | None = None) -> torch.Tensor:
        """Per-step logits ``[T, B, classes]``; neuron state is reset first, so batches never see each other."""
        t = self.timesteps if timesteps is None else int(timesteps)
        if t is None:
            raise ConfigError("timesteps is not set: give it to the adapter or to find_ticket(timesteps=...)")
        if t < 1:
            raise ValueError(f"timesteps must be >= 1, got {t}")
        self.reset()
        return self.run(self.encode(x, t), t)

    @abc.abstractmethod
    def run(self, x_seq: torch.Tensor, timesteps: int) -> torch.Tensor:
        """``x_seq: [T, B, ...]`` -> ``[T, B, classes]``; each adapter says how its network runs T steps."""

    def reset(self) -> None:
        """Clear all neuron state (membranes, synaptic currents) and detach it from the last graph."""

    def prunable_names(self) -> list[str]:
        """Weights of every Conv1d/2d/3d and Linear layer (subclasses of them too), in definition order."""
        return [f"{name}.weight" if name else "weight" for name, m in self.net.named_modules()
                if isinstance(m, PRUNABLE) and isinstance(getattr(m, "weight", None), nn.Parameter)]

    def reinitialize(self, seed: int) -> None:
        """A fresh initialisation in place from ``seed`` alone: every layer's ``reset_parameters`` in definition
        order, then ``init`` if given, drawn on the CPU (the global RNG is left as it was)."""
        self.reset()
        fresh = copy.deepcopy(self).cpu()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for m in fresh.net.modules():
                if hasattr(m, "reset_parameters") and not isinstance(m, Adapter):
                    m.reset_parameters()
            if self.init is not None:
                self.init(fresh.net)
        self.load_state_dict(fresh.state_dict())

    def identity(self) -> dict:
        return {**model_identity(self.net), "adapter": self.framework}

    # ---- nn.Module plumbing ----------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Adapter:
        object.__setattr__(self, "training", mode)
        self.net.train(mode)  # the network's own train(), overrides included; its children are ours
        return self

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, (nn.Module, torch.Tensor)):
            raise AttributeError(f"cannot set {name} on an adapter: it shares the network's modules and parameters, "
                                 "so set it on the network itself")
        super().__setattr__(name, value)

    def settings(self) -> dict:
        """What, besides the weights, decides this adapter's outputs: the network's structure (its ``repr``, which
        holds neuron constants such as tau and thresholds) and the functions and options of the adapter. Part of
        a run's identity."""
        fns = {k: _qualname(v) for k, v in vars(self).items() if callable(v) and not isinstance(v, nn.Module)}
        plain = {k: v for k, v in vars(self).items() if isinstance(v, (int, float, str, bool))
                 and not k.startswith("_") and k not in ("training", "timesteps")}
        return {"structure": hashlib.sha256(repr(self.net).encode()).hexdigest()[:16], **fns, **plain}

    def __deepcopy__(self, memo: dict) -> Adapter:
        """A copy with its own network copy, the tables still shared between the two (neuron state reset first:
        a membrane inside a graph cannot be deep-copied)."""
        self.reset()
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = copy.deepcopy(value, memo)
        return new

    def extra_repr(self) -> str:
        return f"{type(self.net).__name__} via {self.framework}, timesteps={self.timesteps}"


def _qualname(fn: object) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def _check_callable(name: str, fn: object) -> None:
    """``encode``/``readout``/``init``/``step_fn``/``reset_fn`` are functions; a module with parameters or buffers
    would be trained, moved and saved by no one (the adapter owns only the network's tables)."""
    if fn is None:
        return
    if not callable(fn):
        raise ConfigError(f"{name} must be a function (got {type(fn).__name__})")
    if isinstance(fn, nn.Module) and (any(True for _ in fn.parameters()) or any(True for _ in fn.buffers())):
        raise ConfigError(f"{name} is a module with parameters or buffers; make it part of the network (its first "
                          "layer) so it is trained, moved and saved with it")


class MultiStep(Adapter):
    """A network that maps ``[T, B, ...]`` to ``[T, B, classes]`` in one call and keeps no state between calls (or
    clears it with ``reset_fn``)."""

    framework = "multistep"

    def __init__(self, net: nn.Module, timesteps: int | None = None, *,
                 reset_fn: Callable[[nn.Module], None] | None = None, **kw) -> None:
        super().__init__(net, timesteps, **kw)
        _check_callable("reset_fn", reset_fn)
        self._plain(reset_fn=reset_fn)

    def run(self, x_seq: torch.Tensor, timesteps: int) -> torch.Tensor:
        return self.readout(self.net(x_seq))

    def reset(self) -> None:
        if self.reset_fn is not None:
            self.reset_fn(self.net)


class StepWise(Adapter):
    """A network run one step at a time: ``step_fn(net, x_t) -> [B, classes]`` for t = 1..T after
    ``reset_fn(net)``."""

    framework = "stepwise"

    def __init__(self, net: nn.Module, step_fn: Callable[[nn.Module, torch.Tensor], object],
                 reset_fn: Callable[[nn.Module], None], timesteps: int | None = None, **kw) -> None:
        super().__init__(net, timesteps, **kw)
        if not callable(step_fn) or not callable(reset_fn):
            raise ConfigError("stepwise(module, step_fn, reset_fn) needs two functions: step_fn(module, x_t) -> "
                              "logits and reset_fn(module)")
        _check_callable("step_fn", step_fn)
        _check_callable("reset_fn", reset_fn)
        self._plain(step_fn=step_fn, reset_fn=reset_fn)

    def run(self, x_seq: torch.Tensor, timesteps: int) -> torch.Tensor:
        return torch.stack([self.readout(self.step_fn(self.net, x_seq[t])) for t in range(timesteps)])

    def reset(self) -> None:
        self.reset_fn(self.net)
