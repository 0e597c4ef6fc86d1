"""Pure mask arithmetic over ``dict[str, Tensor]`` keyed by parameter name. No training, no modules, no files.

A mask is a bool tensor of the weight's shape: True = the weight survives. Every pruning function returns new masks
and never changes its inputs. Counts are exact: ties in magnitude are broken by position (layer order of the dict,
then flat index), so the same inputs always give the same mask.
"""

from __future__ import annotations

import math

import torch

from snnlth.errors import NumericalError

Masks = dict[str, torch.Tensor]
Weights = dict[str, torch.Tensor]


def ones_like(weights: Weights) -> Masks:
    """All-True masks for ``weights`` (the dense network)."""
    return {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}


def count_alive(masks: Masks) -> int:
    return int(sum(int(m.sum()) for m in masks.values()))


def count_total(masks: Masks) -> int:
    return int(sum(m.numel() for m in masks.values()))


def _check_keys(weights: Weights, masks: Masks) -> None:
    if list(weights) != list(masks):
        raise ValueError(f"weights and masks have different names: {sorted(set(weights) ^ set(masks))[:5]}")


def check_finite(weights: Weights) -> None:
    """A :class:`NumericalError` naming the first tensor that holds NaN or inf: ranking such weights by magnitude
    would keep them (NaN and inf sort last), so a diverged run must never be pruned."""
    for n, w in weights.items():
        bad = int((~torch.isfinite(w.detach())).sum())
        if bad:
            raise NumericalError(f"{n} holds {bad} NaN/inf value{'s' if bad > 1 else ''}")


def n_to_prune(rate: float, alive: int) -> int:
    """The one rounding rule of every pruning step: ``floor(rate · alive)`` of the ``alive`` weights go."""
    return math.floor(rate * alive)


Survivors = int | dict[str, int]  # global: one count; local: a count per tensor


def imp_survivors(dense: Masks, rate: float, rounds: int, scope: str = "global") -> list[Survivors]:
    """Survivors after rounds 0..``rounds`` of IMP at ``rate``, with IMP's own arithmetic (``n_k = n_{k-1} -
    floor(rate · n_{k-1})``, globally or per tensor), so other methods can produce tickets of exactly IMP's sizes."""
    def chain(n: int) -> list[int]:
        out = [n]
        for _ in range(rounds):
            out.append(out[-1] - n_to_prune(rate, out[-1]))
        return out

    if scope == "global":
        return chain(count_alive(dense))
    per = {n: chain(int(m.sum())) for n, m in dense.items()}
    return [{n: c[k] for n, c in per.items()} for k in range(rounds + 1)]


def survivors_total(keep: Survivors) -> int:
    return keep if isinstance(keep, int) else sum(keep.values())


def mask_with_survivors(weights: Weights, keep: Survivors) -> Masks:
    """Magnitude mask of the *dense* ``weights`` keeping exactly ``keep`` weights: the largest |w| globally (an int)
    or in each tensor (a dict by name). NaN/inf weights are a :class:`NumericalError`."""
    check_finite(weights)
    if isinstance(keep, int):
        scores = torch.cat([w.detach().abs().flatten().float().cpu() for w in weights.values()])
        alive = torch.ones_like(scores, dtype=torch.bool)
        return _unflatten(_prune_smallest(scores, alive, scores.numel() - keep), ones_like(weights))
    return {n: _prune_smallest(w.detach().abs().flatten().float().cpu(), torch.ones(w.numel(), dtype=torch.bool),
                               w.numel() - keep[n]).view(w.shape).to(w.device) for n, w in weights.items()}


def keep_largest(weights: Weights, masks: Masks, keep: Survivors) -> Masks:
    """Magnitude mask keeping exactly ``keep`` of the weights alive in ``masks``: the largest |w| among them,
    globally (an int) or in each tensor (a dict by name). ``keep`` above the alive count is an error: masks only
    shrink. NaN/inf weights are a :class:`NumericalError`."""
    _check_keys(weights, masks)
    check_finite(weights)
    if isinstance(keep, int):
        if keep > count_alive(masks):
            raise ValueError(f"cannot keep {keep} weights of {count_alive(masks)} alive")
        scores = torch.cat([weights[n].detach().abs().flatten().float().cpu() for n in masks])
        alive = torch.cat([m.flatten().cpu() for m in masks.values()])
        return _unflatten(_prune_smallest(scores, alive, int(alive.sum()) - keep), masks)
    out = {}
    for n, m in masks.items():
        alive = m.flatten().cpu()
        if keep[n] > int(alive.sum()):
            raise ValueError(f"cannot keep {keep[n]} weights of {n}: {int(alive.sum())} alive")
        scores = weights[n].detach().abs().flatten().float().cpu()
        out[n] = _prune_smallest(scores, alive, int(alive.sum()) - keep[n]).view(m.shape).to(m.device)
    return out


def _prune_smallest(scores: torch.Tensor, alive: torch.Tensor, n_remove: int) -> torch.Tensor:
    """Flat bool mask with the ``n_remove`` alive entries of smallest score removed (stable tie-break by index)."""
    keep = alive.clone()
    if n_remove <= 0:
        return keep
    idx = torch.nonzero(alive).flatten()
    order = torch.sort(scores[idx], stable=True).indices[:n_remove]
    keep[idx[order]] = False
    return keep


def magnitude_prune(weights: Weights, masks: Masks, rate: float, scope: str = "global") -> Masks:
    """Remove ``floor(rate * alive)`` alive weights of smallest |w|: across all layers (``global``) or in each layer
    (``local``, ``floor(rate * alive_layer)`` per layer). NaN/inf weights are a :class:`NumericalError`."""
    _check_keys(weights, masks)
    check_finite(weights)
    if not 0 <= rate < 1:
        raise ValueError(f"prune rate must be in [0, 1), got {rate}")
    if scope == "local":
        return {n: _prune_smallest(w.detach().abs().flatten().float().cpu(), masks[n].flatten().cpu(),
                                   n_to_prune(rate, int(masks[n].sum()))).view_as(masks[n]).to(masks[n].device)
                for n, w in weights.items()}
    if scope != "global":
        raise ValueError(f"scope must be 'global' or 'local', got {scope!r}")
    scores = torch.cat([w.detach().abs().flatten().float().cpu() for w in weights.values()])
    alive = torch.cat([m.flatten().cpu() for m in masks.values()])
    keep = _prune_smallest(scores, alive, n_to_prune(rate, int(alive.sum())))
    return _unflatten(keep, masks)


def mask_at_sparsity(weights: Weights, sparsity: float, scope: str = "global") -> Masks:
    """Magnitude mask of the *dense* ``weights`` with exactly ``floor(sparsity * N)`` weights removed (Early-Bird)."""
    return magnitude_prune(weights, ones_like(weights), sparsity, scope)


def random_prune(masks: Masks, rate: float, generator: torch.Generator, scope: str = "global") -> Masks:
    """Remove ``floor(rate * alive)`` alive weights chosen uniformly at random (globally or per layer)."""
    if scope == "local":
        out = {}
        for n, m in masks.items():
            scores = torch.rand(m.numel(), generator=generator)
            out[n] = _prune_smallest(scores, m.flatten().cpu(), n_to_prune(rate, int(m.sum()))).view_as(m).to(m.device)
        return out
    alive = torch.cat([m.flatten().cpu() for m in masks.values()])
    scores = torch.rand(alive.numel(), generator=generator)
    return _unflatten(_prune_smallest(scores, alive, n_to_prune(rate, int(alive.sum()))), masks)


def random_like(reference: Masks, generator: torch.Generator) -> Masks:
    """Random masks with the same number of survivors in every layer as ``reference``."""
    out = {}
    for n, m in reference.items():
        keep = torch.zeros(m.numel(), dtype=torch.bool)
        keep[torch.randperm(m.numel(), generator=generator)[: int(m.sum())]] = True
        out[n] = keep.view_as(m).to(m.device)
    return out


def _unflatten(flat: torch.Tensor, like: Masks) -> Masks:
    out, start = {}, 0
    for n, m in like.items():
        out[n] = flat[start: start + m.numel()].view_as(m).to(m.device)
        start += m.numel()
    return out


def sparsity(masks: Masks) -> float:
    """Fraction of prunable weights removed."""
    total = count_total(masks)
    return (total - count_alive(masks)) / total if total else 0.0


def sparsity_all(masks: Masks, num_parameters: int) -> float:
    """Fraction of *all* parameters that are pruned (the paper's tables count this way)."""
    return (count_total(masks) - count_alive(masks)) / num_parameters


def layer_sparsity(masks: Masks) -> dict[str, float]:
    return {n: (m.numel() - int(m.sum())) / m.numel() for n, m in masks.items()}


def hamming(a: Masks, b: Masks) -> float:
    """Normalised Hamming distance: fraction of prunable entries whose mask differs."""
    if list(a) != list(b):
        raise ValueError("masks have different names")
    diff = sum(int((a[n] != b[n].to(a[n].device)).sum()) for n in a)
    return diff / count_total(a)


def hamming_within(a: Masks, b: Masks, alive: Masks) -> float:
    """Fraction of the entries alive in ``alive`` whose mask differs between ``a`` and ``b``: how much of one pruning
    decision changed, on the same scale in every round however sparse the net already is."""
    if not (list(a) == list(b) == list(alive)):
        raise ValueError("masks have different names")
    diff = sum(int(((a[n] != b[n].to(a[n].device)) & alive[n].to(a[n].device)).sum()) for n in a)
    return diff / max(count_alive(alive), 1)


def max_distance(window: list[Masks], alive: Masks | None = None) -> float:
    """Largest distance between the newest mask of ``window`` and each of the others: :func:`hamming` over all
    entries (Early-Bird), or :func:`hamming_within` ``alive`` (the round stop)."""
    dist = hamming if alive is None else (lambda a, b: hamming_within(a, b, alive))
    return max(dist(window[-1], other) for other in window[:-1])


def apply_(weights: Weights, masks: Masks) -> None:
    """Zero the pruned entries of ``weights`` in place (by mask, never by value)."""
    with torch.no_grad():
        for n, w in weights.items():
            w.mul_(masks[n].to(device=w.device, dtype=w.dtype))


def pack(masks: Masks) -> dict[str, torch.Tensor]:
    """Compress masks to 1 bit per entry: ``{name: uint8 bits}`` plus ``{name + ".shape": int64 shape}``."""
    import numpy as np

    out = {}
    for n, m in masks.items():
        out[n] = torch.from_numpy(np.packbits(m.detach().cpu().numpy().ravel()))
        out[n + ".shape"] = torch.tensor(list(m.shape), dtype=torch.int64)
    return out


def unpack(packed: dict[str, torch.Tensor]) -> Masks:
    """Inverse of :func:`pack`."""
    import numpy as np

    out = {}
    for n, bits in packed.items():
        if n.endswith(".shape"):
            continue
        shape = tuple(packed[n + ".shape"].tolist())
        flat = np.unpackbits(bits.numpy(), count=math.prod(shape)).astype(bool)
        out[n] = torch.from_numpy(flat).view(shape)
    return out
