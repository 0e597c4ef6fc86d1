"""Level records (one entry of ``summary.json["levels"]``) and the choice of levels to retrain."""

from __future__ import annotations

from snnlth import masks as M
from snnlth.config import parse_retrain_at
from snnlth.errors import ConfigError


def level_entry(ctx, model, round_: int | None, masks: M.Masks, phase, timesteps: int, search_seconds: float,
                final: bool, masks_key: str) -> dict:
    """The contract keys of a level, plus ``layer_sparsity``, ``eval_seconds``, the ``phase`` and ``masks`` files
    that hold the ticket, its activity and energy, and its storage size. ``phase`` is the training that gives the
    level its accuracy (None if the level was never trained)."""
    all_prunable = dict(model.named_parameters())
    prunable_total = sum(all_prunable[n].numel() for n in model.prunable_names())
    num_parameters = sum(p.numel() for p in model.parameters())
    pruned = M.count_total(masks) - M.count_alive(masks)
    return {
        "round": round_,
        "sparsity_prunable": pruned / prunable_total,
        "sparsity_all": pruned / num_parameters,
        "timesteps": timesteps,
        "test_accuracy": phase.test_accuracy if phase else None,
        "best_test_accuracy": phase.best_test_accuracy if phase else None,
        "train_seconds": phase.train_seconds if phase else 0.0,
        "eval_seconds": (phase.seconds - phase.train_seconds) if phase else 0.0,
        "search_seconds": search_seconds,
        "final": bool(final and phase is not None),
        "phase": phase.name if phase else None,
        "masks": masks_key,
        **{k: (phase.history[-1].get(k) if phase else None)
           for k in ("spikes_per_image", "synops_per_image", "macs_per_image", "energy_uj_per_image")},
        **storage_bytes(model, masks),
        "layer_sparsity": M.layer_sparsity(masks),
    }


def resolve_retrain_rounds(items: tuple[str, ...], sparsities: list[float]) -> set[int]:
    """Rounds named by ``--retrain-at``: ``last``, ``all``, round numbers, or sparsities (nearest level)."""
    last = len(sparsities) - 1
    out: set[int] = set()
    for item in items:
        value = parse_retrain_at(item)
        if value == "last":
            out.add(last)
        elif value == "all":
            out.update(range(last + 1))
        elif isinstance(value, int):
            if not 0 <= value <= last:
                raise ConfigError(f"--retrain-at {value}: there is no such round (rounds are 0..{last})")
            out.add(value)
        else:
            out.add(min(range(last + 1), key=lambda k: abs(sparsities[k] - value)))
    return out


def storage_bytes(model, masks: M.Masks) -> dict[str, int]:
    """Bytes of the dense fp32 state dict vs a ticket stored as 1 mask bit per prunable entry + fp32 survivors + the
    other tensors as they are (what ``snnlth export`` writes, without its small header)."""
    state = model.state_dict()
    dense = sum(t.numel() * t.element_size() for t in state.values())
    masked = sum(state[n].numel() * state[n].element_size() for n in masks)
    ticket = dense - masked + sum((m.numel() + 7) // 8 + int(m.sum()) * 4 for m in masks.values())
    return {"dense_bytes": dense, "ticket_bytes": ticket}
