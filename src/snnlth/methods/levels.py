"""Level records (one entry of ``summary.json["levels"]``) and the choice of levels to retrain."""

from __future__ import annotations

from dataclasses import dataclass, field

from snnlth import masks as M
from snnlth.config import parse_retrain_at
from snnlth.errors import ConfigError
from snnlth.methods.base import PhaseResult, Spent


@dataclass(frozen=True)
class LevelSpec:
    """What a level is made of: its masks (stored under ``masks_key``), the phase that gives its accuracy (None if
    never trained), the T of that phase, the search work spent before it (None: the level searched nothing itself,
    as a reinit of another run's masks), and whether it is a ticket trained at the final T (``final``) or a
    search-path accuracy at T_early."""

    round: int | None
    masks: M.Masks
    masks_key: str
    phase: PhaseResult | None
    timesteps: int
    spent: Spent | None
    final: bool = field(kw_only=True)  # keyword-only: never a bare True/False at the call site


def level_entry(ctx, spec: LevelSpec) -> dict:
    """One entry of ``summary.json["levels"]``: the contract keys, plus ``layer_sparsity``, the ``phase`` and
    ``masks`` files that hold the ticket, its activity and energy, its storage size, and the seconds spent:
    ``search_seconds`` (training before this ticket, as the paper counts it), ``search_eval_seconds`` and
    ``search_wall_seconds`` (the wall clock of that search), then ``train_seconds``/``eval_seconds`` of its phase."""
    model, phase, spent = ctx.shape_model(), spec.phase, spec.spent
    evaluated = phase.history[-1] if phase else {}
    return {
        "round": spec.round,
        **ctx.sparsity_fields(spec.masks),
        "timesteps": spec.timesteps,
        "test_accuracy": phase.test_accuracy if phase else None,
        "best_test_accuracy": phase.best_test_accuracy if phase else None,
        "train_seconds": phase.train_seconds if phase else 0.0,
        "eval_seconds": phase.eval_seconds if phase else 0.0,
        "search_seconds": spent.search if spent else None,
        "search_eval_seconds": spent.eval if spent else None,
        "search_wall_seconds": spent.wall if spent else None,
        "final": bool(spec.final and phase is not None),
        "phase": phase.name if phase else None,
        "masks": spec.masks_key,
        **{k: evaluated.get(k) for k in ("spikes_per_image", "synops_per_image", "macs_per_image",
                                         "energy_uj_per_image")},
        **storage_bytes(model, spec.masks),
        "layer_sparsity": M.layer_sparsity(spec.masks),
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
