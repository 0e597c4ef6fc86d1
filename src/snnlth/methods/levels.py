"""Level records (one entry of ``summary.json["levels"]``) and the choice of levels to retrain."""

from __future__ import annotations

from snnlth import masks as M
from snnlth.config import parse_retrain_at
from snnlth.engine.counting import COUNT_KEYS
from snnlth.errors import ConfigError
from snnlth.methods.phases import PhaseResult, Spent


def level_entry(sizes, phase: PhaseResult, ticket: tuple[str, M.Masks], *, round: int | None,
                spent: Spent | None, final: bool) -> dict:
    """One entry of ``summary.json["levels"]``: the contract keys, plus ``layer_sparsity``, the ``phase`` and
    ``masks`` files that hold the ticket (``ticket``: the masks' key and the masks), its activity, operations and
    energy (:data:`~snnlth.engine.counting.COUNT_KEYS`, of its phase's last evaluation), its
    storage size (``sizes``: a :class:`~snnlth.methods.kit.Sizes`), and the seconds spent: ``search_seconds``
    (training before this ticket, as the paper counts it; None when it searched nothing itself),
    ``search_eval_seconds`` and ``search_wall_seconds`` (the wall clock of that search), then
    ``train_seconds``/``eval_seconds`` of its phase."""
    key, masks = ticket
    evaluated = phase.history[-1]
    return {
        "round": round,
        **sizes.sparsity(masks),
        "timesteps": phase.timesteps,
        "test_accuracy": phase.test_accuracy,
        "best_test_accuracy": phase.best_test_accuracy,
        "train_seconds": phase.train_seconds,
        "eval_seconds": phase.eval_seconds,
        "search_seconds": spent.search if spent else None,
        "search_eval_seconds": spent.eval if spent else None,
        "search_wall_seconds": spent.wall if spent else None,
        "final": bool(final),
        "phase": phase.name,
        "masks": key,
        **{k: evaluated.get(k) for k in COUNT_KEYS},
        **sizes.storage(masks),
        "layer_sparsity": M.layer_sparsity(masks),
    }


def resolve_retrain_rounds(items: tuple[str, ...], sparsities: list[float], flag: str = "--retrain-at") -> set[int]:
    """Rounds named by ``items`` (``--retrain-at``, ``--reinit-levels``): ``last``, ``all``, round numbers, or
    sparsities (the nearest level); ``sparsities``: of each round's level."""
    last = len(sparsities) - 1
    out: set[int] = set()
    for item in items:
        value = parse_retrain_at(item, flag)
        if value == "last":
            out.add(last)
        elif value == "all":
            out.update(range(last + 1))
        elif isinstance(value, int):
            if not 0 <= value <= last:
                raise ConfigError(f"{flag} {value}: there is no such round (rounds are 0..{last})")
            out.add(value)
        else:
            out.add(min(range(last + 1), key=lambda k: abs(sparsities[k] - value)))
    return out
