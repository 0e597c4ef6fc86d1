"""NIR nodes of snnlth's layers, each an exact form (docs/api.md, "NIR export"):

- BatchNorm (eval) folded into the conv/linear before it: ``W' = W·s``, ``b' = (b − μ)·s + β``, ``s = γ/√(σ²+ε)``;
  pruned weights stay exactly 0.
- The input normalisation as an exact 1×1 ``Conv2d`` (weight 1/std, bias −mean/std): folding it into a padded 3×3
  conv would be wrong at the borders.
- LIF → ``nir.LIF(tau=τ·dt, r, v_leak=v_reset, v_threshold, v_reset)`` with arrays of the layer's shape: forward
  Euler with step dt is the decay-input LIF ``V += (X − (V − V_reset))/τ`` for ``r = 1`` (``V += X − (V −
  V_reset)/τ`` for ``r = τ``). Ties: snnlth fires at V ≥ V_th, NIR at V > V_th, so the threshold is written one
  float32 step lower (the largest float32 below V_th): for float32 membranes both fire alike.
- Max-pooling of spikes (NIR has no max-pool): ``SumPool2d`` then a gate ``IF(r=1/dt, v_threshold=0.5,
  v_reset=0)``, which fires iff the window held a spike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from snnlth.errors import ConfigError

TIE_RULE = "v_threshold written as the largest float32 below snnlth's (snnlth fires at V >= V_th, NIR at V > V_th)"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy()


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.Module | None) -> tuple[np.ndarray, np.ndarray]:
    """``(W', b')`` of a conv/linear followed by ``bn`` in eval mode (computed in float64, written as float32);
    without ``bn`` the layer's own weight and bias (zeros if it has none). A BatchNorm without affine parameters
    has γ = 1, β = 0; one without running statistics normalises by each batch, which a graph cannot."""
    b = bias.double() if bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64,
                                                           device=weight.device)
    if bn is None:
        return _np(weight), _np(b)
    if bn.running_var is None or bn.running_mean is None:
        raise ConfigError("NIR export: a BatchNorm without running statistics (track_running_stats=False) "
                          "normalises by each batch, which a graph cannot; train it with running statistics")
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(b)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(b)
    s = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
    w = weight.double() * s.view(-1, *([1] * (weight.dim() - 1)))
    return _np(w), _np((b - bn.running_mean.double()) * s + beta)


class Graph:
    """NIR nodes in order; each fed by the node added before it unless ``sources`` says otherwise (several
    sources: their outputs are summed, as every importer does with several edges into one node)."""

    def __init__(self, nir_module: Any) -> None:
        self.nir, self.nodes, self.edges, self.last = nir_module, {}, [], None
        self.out_shape: tuple[int, ...] | None = None  # of one sample at the output, where the last node has no weight

    def add(self, name: str, node: Any, sources: tuple[str, ...] | None = None) -> str:
        if name in self.nodes:
            raise ConfigError(f"NIR export: layer {name} runs twice in one step (shared weights); NIR nodes run once")
        self.nodes[name] = node
        for src in (sources if sources is not None else (self.last,) if self.last is not None else ()):
            self.edges.append((src, name))
        self.last = name
        return name


def _full(shape: tuple[int, ...], value: float) -> np.ndarray:
    return np.full(shape, value, dtype=np.float32)


def below(v_threshold: float) -> np.float32:
    """The largest float32 below ``v_threshold``: NIR's ``V > θ'`` is snnlth's ``V >= θ`` for float32 membranes."""
    return np.nextafter(np.float32(v_threshold), np.float32(-np.inf))


def lif(nir: Any, shape: tuple[int, ...], dt: float, tau: float, v_threshold: float, *, v_reset: float = 0.0,
        decay_input: bool = True) -> Any:
    """A decay-input LIF (``r = 1``; ``r = τ`` when the input is not decayed) with arrays of ``shape``."""
    return nir.LIF(tau=_full(shape, tau * dt), r=_full(shape, 1.0 if decay_input else tau),
                   v_leak=_full(shape, v_reset), v_threshold=_full(shape, below(v_threshold)),
                   v_reset=_full(shape, v_reset))


def if_node(nir: Any, shape: tuple[int, ...], dt: float, v_threshold: float, v_reset: float = 0.0) -> Any:
    """An integrate-and-fire neuron ``V += X`` (``r = 1/dt``)."""
    return nir.IF(r=_full(shape, 1.0 / dt), v_threshold=_full(shape, below(v_threshold)),
                  v_reset=_full(shape, v_reset))


def pool_gate(nir: Any, g: Graph, name: str, shape: tuple[int, ...], dt: float, kernel: int = 2,
              stride: int = 2) -> None:
    """Max-pool of binary spikes: a sum over each window (``shape``: its output, (C, H, W)), then a gate firing iff
    the sum is ≥ 1 (0.5 is the threshold: the sums are whole numbers)."""
    g.add(f"{name}_sum", nir.SumPool2d(kernel_size=np.array([kernel, kernel]), stride=np.array([stride, stride]),
                                      padding=np.array([0, 0])))
    g.add(f"{name}_gate", nir.IF(r=_full(shape, 1.0 / dt), v_threshold=_full(shape, 0.5), v_reset=_full(shape, 0.0)))


def normalize(nir: Any, g: Graph, transform: nn.Module | None, channels: int, hw: tuple[int, int]) -> None:
    """The input normalisation ``(x − mean)/std`` as a 1×1 conv (nothing when the model has none)."""
    std, mean = getattr(transform, "std", None), getattr(transform, "mean", None)
    if std is None or mean is None:
        return
    std, mean = std.flatten().double(), mean.flatten().double()
    weight = torch.diag(1.0 / std).view(channels, channels, 1, 1)
    g.add("normalize", nir.Conv2d(input_shape=tuple(hw), weight=_np(weight), stride=1, padding=0, dilation=1,
                                  groups=1, bias=_np(-mean / std)))


def conv(nir: Any, layer: nn.Conv2d, hw: tuple[int, int], bn: nn.Module | None) -> tuple[Any, tuple[int, int]]:
    """The conv ``layer`` (with ``bn`` folded in) on ``hw`` = (H, W) maps, and the (H, W) of its output."""
    w, b = fold_bn(layer.weight, layer.bias, bn)
    out = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in zip(
        hw, layer.padding, layer.dilation, layer.kernel_size, layer.stride))
    return nir.Conv2d(input_shape=tuple(hw), weight=w, stride=layer.stride, padding=layer.padding,
                      dilation=layer.dilation, groups=layer.groups, bias=b), out


def affine(nir: Any, layer: nn.Linear, bn: nn.Module | None = None) -> Any:
    w, b = fold_bn(layer.weight, layer.bias, bn)
    return nir.Affine(weight=w, bias=b)


def flatten(nir: Any, shape: tuple[int, ...]) -> Any:
    """Flatten of one sample's ``shape`` (NIR's dims are per sample)."""
    return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
