"""Checks of an adapted network before a search writes anything: one line naming the problem and the fix."""

from __future__ import annotations

import copy

import torch

from snnlth.errors import ConfigError
from snnlth.models.protocol import TicketModel


def check_model(model: TicketModel, x: torch.Tensor, timesteps: int,
                device: torch.device = torch.device("cpu")) -> int:
    """Run a copy of ``model`` on the batch ``x`` twice (eval mode, no gradients; ``model`` itself is untouched) and
    return the number of classes. Fails on: no prunable layers; an output that is not ``[T, B, classes]``; state
    that leaks from one batch into the next (the two runs differ)."""
    if not model.prunable_names():
        raise ConfigError(f"{_name(model)} has no prunable layers (no Conv or Linear weights); snnlth prunes the "
                          "weights of nn.Conv1d/2d/3d and nn.Linear layers (and their subclasses)")
    probe = copy.deepcopy(model).to(device).eval()
    x = x.to(device)
    runs = []
    for _ in range(2):  # the same random draws both times (a random input coding is no leak)
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            runs.append(_output(probe, x, timesteps))
    first, second = runs
    if not torch.allclose(first, second, rtol=1e-4, atol=1e-5):
        diff = (first - second).abs().max().item()
        raise ConfigError(f"state leaks between batches: {_name(model)} gave other outputs for the same batch the "
                          f"second time (max difference {diff:.3g}); reset every neuron's state (membranes, "
                          "currents) in the adapter's reset, e.g. stepwise(..., reset_fn=...)")
    return int(first.shape[-1])


def _output(model: TicketModel, x: torch.Tensor, timesteps: int) -> torch.Tensor:
    try:
        out = model(x, timesteps)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's network failed on its own input
        raise ConfigError(f"{_name(model)} failed on a batch of the training data ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); check the input shape it expects"
                          ) from None
    batch = len(x)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"{_name(model)} returned {type(out).__name__}; it must return logits [T, B, classes]")
    if out.dim() != 3 or tuple(out.shape[:2]) != (timesteps, batch):
        hint = ("it seems to return one step [B, classes]: wrap a network that runs one step per call with "
                "snnlth.adapters.stepwise / spikingjelly / snntorch, or return the per-step outputs"
                if out.dim() == 2 else "each step must give [B, classes] (per-step logits, not a sum over time)")
        raise ConfigError(f"{_name(model)} output has shape {tuple(out.shape)}, not [T, B, classes] = "
                          f"[{timesteps}, {batch}, classes]; {hint}")
    if not out.is_floating_point():
        raise ConfigError(f"{_name(model)} output is {out.dtype}; it must be float logits")
    return out.float()


def _name(model: TicketModel) -> str:
    net = getattr(model, "net", model)
    return f"the model ({type(net).__name__})"
