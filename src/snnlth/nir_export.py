"""Tickets as NIR graphs (the Neuromorphic Intermediate Representation, ``nir`` 1.0.8), the form spikingjelly,
snntorch, norse, Lava and SpiNNaker toolchains exchange SNNs in.

How snnlth's layers are written (each exact; docs/api.md):
- BatchNorm (eval) folded into the conv/linear before it: ``W' = W·s``, ``b' = (b − μ)·s + β``, ``s = γ/√(σ²+ε)``;
  pruned weights stay exactly 0. The first conv runs on the image at every step (direct coding).
- The input normalisation as an exact 1×1 ``Conv2d`` (weight 1/std, bias −mean/std); resizing cannot be expressed
  (the metadata says so).
- LIF → ``nir.LIF(tau=τ·dt, r=1, v_leak=0, v_threshold, v_reset=0)`` with arrays of the layer's shape: Euler with
  step dt is snnlth's ``V += (X − V)/τ``. Ties: snnlth fires at V ≥ V_th, NIR at V > V_th, so the threshold is
  written one float32 step lower (the largest float32 below V_th): for float32 membranes both fire alike.
- Max-pooling of spikes (NIR has no max-pool): ``SumPool2d`` then a gate ``IF(r=1/dt, v_threshold=0.5, v_reset=0)``,
  which fires iff the window held a spike. ``Flatten`` with per-sample dims.
- The readout (logits summed over T) stays outside the graph.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from snnlth.errors import ConfigError
from snnlth.models.convnet import ConvNet, LeNet300
from snnlth.models.protocol import Normalize
from snnlth.snn.neuron import LIF

TIE_RULE = "v_threshold written as the largest float32 below snnlth's (snnlth fires at V >= V_th, NIR at V > V_th)"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy()


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """``(W', b')`` of a conv followed by ``bn`` in eval mode (computed in float64, written as float32)."""
    s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = weight.double() * s.view(-1, *([1] * (weight.dim() - 1)))
    b = ((bias.double() if bias is not None else torch.zeros_like(s)) - bn.running_mean.double()) * s + bn.bias.double()
    return _np(w), _np(b)


class _Graph:
    """Nodes in order, each fed by the one before (or by ``source``)."""

    def __init__(self, nir_module: Any) -> None:
        self.nir, self.nodes, self.edges, self.last = nir_module, {}, [], None

    def add(self, name: str, node: Any, source: str | None = None) -> str:
        self.nodes[name] = node
        src = source if source is not None else self.last
        if src is not None:
            self.edges.append((src, name))
        self.last = name
        return name


def _lif(nir, neuron: LIF, shape: tuple[int, ...], dt: float):
    full = lambda v: np.full(shape, v, dtype=np.float32)  # noqa: E731
    threshold = np.nextafter(np.float32(neuron.v_threshold), np.float32(0))
    return nir.LIF(tau=full(neuron.tau * dt), r=full(1.0), v_leak=full(0.0), v_threshold=full(threshold),
                   v_reset=full(0.0))


def _pool_gate(nir, g: _Graph, name: str, shape: tuple[int, ...], dt: float) -> None:
    """Max-pool 2×2 of binary spikes: a sum over each window, then a gate firing iff the sum is ≥ 1."""
    g.add(f"{name}_sum", nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                      padding=np.array([0, 0])))
    full = lambda v: np.full(shape, v, dtype=np.float32)  # noqa: E731
    g.add(f"{name}_gate", nir.IF(r=full(1.0 / dt), v_threshold=full(0.5), v_reset=full(0.0)))


def _normalize(nir, g: _Graph, model: nn.Module, channels: int, side: int) -> None:
    transform = getattr(model, "input_transform", None)
    if isinstance(transform, Normalize):
        std, mean = transform.std.flatten().double(), transform.mean.flatten().double()
        weight = torch.diag(1.0 / std).view(channels, channels, 1, 1)
        g.add("normalize", nir.Conv2d(input_shape=(side, side), weight=_np(weight), stride=1, padding=0, dilation=1,
                                      groups=1, bias=_np(-mean / std)))


def _convnet(nir, model: ConvNet, shape: tuple[int, int, int], dt: float) -> _Graph:
    g = _Graph(nir)
    c, side, _ = shape
    g.add("input", nir.Input(input_type={"input": np.array(shape)}))
    _normalize(nir, g, model, c, side)
    for i, (block, neuron) in enumerate(zip(model.blocks, model.neurons)):
        conv, bn = block[0], block[1]
        w, b = fold_bn(conv.weight, conv.bias, bn)
        g.add(f"conv{i}", nir.Conv2d(input_shape=(side, side), weight=w, stride=conv.stride, padding=conv.padding,
                                     dilation=conv.dilation, groups=conv.groups, bias=b))
        g.add(f"lif{i}", _lif(nir, neuron, (conv.out_channels, side, side), dt))
        side //= 2
        _pool_gate(nir, g, f"pool{i}", (conv.out_channels, side, side), dt)
    channels = model.blocks[-1][0].out_channels
    g.add("flatten", nir.Flatten(input_type={"input": np.array([channels, side, side])}, start_dim=0, end_dim=-1))
    g.add("classifier", nir.Affine(weight=_np(model.classifier.weight), bias=_np(model.classifier.bias)))
    return g


def _lenet(nir, model: LeNet300, shape: tuple[int, int, int], dt: float) -> _Graph:
    g = _Graph(nir)
    g.add("input", nir.Input(input_type={"input": np.array(shape)}))
    _normalize(nir, g, model, shape[0], shape[1])
    g.add("flatten", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1))
    for i, (fc, neuron) in enumerate(((model.fc1, model.lif1), (model.fc2, model.lif2)), start=1):
        g.add(f"fc{i}", nir.Affine(weight=_np(fc.weight), bias=_np(fc.bias)))
        g.add(f"lif{i}", _lif(nir, neuron, (fc.out_features,), dt))
    g.add("fc3", nir.Affine(weight=_np(model.fc3.weight), bias=_np(model.fc3.bias)))
    return g


_BUILDERS = {ConvNet: _convnet, LeNet300: _lenet}


def _nir():
    try:
        import nir
    except ImportError:
        raise ConfigError("NIR export needs the nir package: pip install 'snnlth[nir]' (nir 1.0.8)") from None
    return nir


def model_graph(model: nn.Module, input_shape: tuple[int, int, int], dt: float = 1e-4,
                metadata: dict[str, Any] | None = None):
    """The NIR graph of an snnlth ``model`` (in eval mode: BatchNorm folded with its running statistics) for inputs
    of ``input_shape`` (C, H, W); ``metadata`` values are stored as JSON strings."""
    nir = _nir()

    builder = _BUILDERS.get(type(model))
    if builder is None:
        raise ConfigError(f"NIR export does not cover {type(model).__name__} yet; export a convnet or lenet300 ticket "
                          "(or export it as safetensors)")
    g = builder(nir, model, tuple(input_shape), dt)
    classes = g.nodes[g.last].weight.shape[0]
    g.add("output", nir.Output(output_type={"output": np.array([classes])}))
    meta = {"dt": json.dumps(dt), "tie_rule": TIE_RULE, **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    return nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata=meta)


def write_graph(graph: Any, out: str | Path) -> None:
    """``nir.write`` to a temporary file beside ``out``, then renamed over it: a failed write leaves ``out`` as it
    was."""
    import os

    nir = _nir()
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent} is not a directory; create it or give --out in an existing one")
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        nir.write(str(tmp), graph)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _ticket_of(source: Any):
    """The :class:`~snnlth.export.Ticket` of a run directory (its sparsest final level), a ``TicketSearch``, an
    exported ticket file or a ticket."""
    import tempfile

    from snnlth.export import Ticket, export_ticket, load_ticket

    if isinstance(source, Ticket):
        return source
    path = Path(getattr(source, "run_dir", source))
    if path.is_file():
        return load_ticket(path)
    with tempfile.TemporaryDirectory() as tmp:
        export_ticket(path, Path(tmp) / "ticket.safetensors")
        return load_ticket(Path(tmp) / "ticket.safetensors")


def to_nir(source: Any, dt: float = 1e-4, timesteps: int | None = None):
    """The NIR graph (``nir.NIRGraph``) of a ticket: ``source`` is a run directory (its sparsest final level), a
    :class:`~snnlth.TicketSearch`, a file written by ``snnlth export`` or a loaded ticket. ``timesteps``: the T
    written into the metadata (default the ticket's). Write it with ``nir.write(path, graph)``."""
    from snnlth import __version__

    if not dt > 0:
        raise ConfigError(f"dt must be > 0 (got {dt}); NIR's importers use 1e-4")
    ticket = _ticket_of(source)
    meta, model = ticket.metadata, ticket.model
    if timesteps is not None and timesteps < 1:
        raise ConfigError(f"--timesteps must be >= 1 (got {timesteps})")
    shape = (int(meta["in_channels"]), int(meta["image_size"]), int(meta["image_size"]))
    per_layer = {n: 1.0 - float(m.float().mean()) for n, m in ticket.masks.items()}
    resize = getattr(getattr(model, "input_transform", None), "size", None)
    info = {"timesteps": int(timesteps or meta["timesteps"]), "sparsity_prunable": float(meta["sparsity_prunable"]),
            "sparsity_all": float(meta["sparsity_all"]), "sparsity_per_layer": per_layer,
            "readout": "logits = the output summed over the T steps (outside the graph); prediction = argmax",
            "input": "raw images in [0, 1], the same image at every step (direct coding)"
                     + (f"; resize them to {resize}x{resize} first (NIR cannot express resizing)" if resize else ""),
            "snnlth_version": __version__, "run": json.loads(meta["config"]), "model": meta["model"],
            "test_accuracy": float(meta["test_accuracy"])}
    return model_graph(model, shape, dt, info)
