"""Rounds of train-prune-rewind, shared by every round-based method (IMP, random pruning, the ANN twin of transfer):
the method gives the pruning rule, the modifiers (Early-Time, round stop) change how rounds train.

Round 0 trains the dense net for E epochs from init and stores its state after R epochs. Round k >= 1 starts from
that stored state (weights, biases, BN parameters and running statistics, masked), a fresh optimiser and a fresh
schedule (--schedule) over E - R epochs (E: --search-epochs, and --search-schedule, where given). After each round
the surviving weights are pruned by the rule. When a modifier takes the rounds off the tickets' path (a search at
T_early, rounds cut short, a search schedule of their own), the levels ``--retrain-at`` names are retrained at full
T with --epochs and --schedule from the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from snnlth import masks as M
from snnlth.errors import ConfigError
from snnlth.methods.kit import MethodKit, Trained, ensure_finite
from snnlth.methods.levels import resolve_retrain_rounds
from snnlth.methods.phases import ResumableHook, Spent
from snnlth.rng import STREAM

PruneFn = Callable[[int, M.Weights, M.Masks], M.Masks]  # (next round, trained weights, current masks) -> masks


@dataclass(frozen=True)
class RoundPlan:
    """What a modifier may know of round ``k`` when it gives its hooks: the weights alive in it, the mask the round
    hands on as a function of the current weights (the pruning rule), and the earliest epoch it may stop at (the
    rewind point, and every modifier's own minimum)."""

    k: int
    alive: M.Masks
    next_masks: Callable[[M.Weights], M.Masks]
    min_epochs: int


class RoundModifier(Protocol):
    """Something any round-based method composes. ``timesteps(k)``: T of round k (a number, a function of the epoch,
    or None: no opinion); ``min_epochs(k)``: the earliest a round may stop; ``hooks(plan)``: epoch hooks of a round;
    ``off_path``: the rounds' accuracies are not tickets' (known once round 0 ran); ``cuts_rounds``: its hooks may
    end a round early; ``spent_after(k)``: search work of its own after round k; ``record(trained)``: its
    ``(summary key, value)``."""

    cuts_rounds: bool

    def timesteps(self, k: int) -> int | Callable[[int], int] | None: ...

    def min_epochs(self, k: int) -> int: ...

    def hooks(self, plan: RoundPlan) -> tuple[ResumableHook, ...]: ...

    @property
    def off_path(self) -> bool: ...

    def spent_after(self, k: int) -> Spent: ...

    def record(self, trained: dict[int, Trained]) -> tuple[str, Any]: ...


@dataclass(frozen=True)
class RoundsResult:
    """The levels of the rounds (round 0 first), every round's masks, and the modifiers' summary records
    (``early_time``, ``round_stop``)."""

    levels: list[dict]
    masks: dict[int, M.Masks]
    records: dict[str, Any] = field(default_factory=dict)


class RewindHook:
    """Stores the model state after ``epoch`` epochs of the dense run as the ``rewind`` state (late rewinding)."""

    def __init__(self, kit: MethodKit, epoch: int) -> None:
        self.kit, self.epoch = kit, epoch

    def after_epoch(self, model, state) -> bool:
        if self.epoch > 0 and state.epoch == self.epoch:
            self.kit.store.save_state_once("rewind", model.state_dict())
        return False

    def state(self) -> dict:
        return {}

    def load(self, state: dict) -> None:
        pass


def search_epochs(cfg) -> int:
    """Epochs of a search run (``--search-epochs``, default ``--epochs``)."""
    return cfg.search.search_epochs or cfg.train.epochs


def search_differs(cfg) -> bool:
    """The search runs train otherwise than the final tickets (``--search-epochs``, ``--search-schedule``): their
    accuracies are not the tickets', which are retrained in full."""
    return cfg.search_differs


def same_search(cfg) -> tuple[str, ...]:
    """``--search-epochs``/``--search-schedule`` given equal to ``--epochs``/``--schedule`` change nothing: left out
    of the run's name (a method's ``unused``)."""
    return () if cfg.search_differs else ("search_epochs", "search_schedule")


def check_search_run(cfg, method: str) -> None:
    """The search run must reach the rewind point and the end of the Early-Time warm-up."""
    epochs, s = search_epochs(cfg), cfg.search
    if epochs <= s.rewind_epoch:
        raise ConfigError(f"--method {method}: the search run of {epochs} epochs (--search-epochs, else --epochs) "
                          f"must be longer than --rewind-epoch {s.rewind_epoch}; lower --rewind-epoch")
    if s.early_time == "auto" and epochs <= s.et_warmup_epochs:
        raise ConfigError(f"--method {method}: the search run of {epochs} epochs must be longer than "
                          f"--et-warmup-epochs {s.et_warmup_epochs}; lower --et-warmup-epochs")


def magnitude_rule(kit: MethodKit) -> PruneFn:
    """IMP's rule: the smallest-magnitude ``--prune-rate`` of the surviving weights (``--scope``)."""
    s = kit.cfg.search
    return lambda _k, weights, masks: M.magnitude_prune(weights, masks, s.prune_rate, s.scope)


def run_rounds(kit: MethodKit, prune: PruneFn, modifiers: Sequence[RoundModifier] = ()) -> RoundsResult:
    """Rounds 0..K with ``prune`` between them, changed by ``modifiers``; then the full-T retraining of the chosen
    levels when a modifier takes the rounds off the tickets' path."""
    s, cfg = kit.cfg.search, kit.cfg
    init = kit.init()
    by_round = {0: kit.masks("round_00", kit.sizes.dense)}
    trained = {0: _train_round(kit, 0, init, (by_round[0], prune), modifiers)}
    off_path = any(m.off_path for m in modifiers) or search_differs(cfg)
    retrain = resolve_retrain_rounds(s.retrain_at, kit.sizes.imp_sparsities(s.prune_rate, s.rounds, s.scope)
                                     ) if off_path else set()
    start = init if s.rewind_epoch == 0 else kit.store.load_state("rewind")
    for k in range(1, s.rounds + 1):
        by_round[k] = kit.masks(f"round_{k:02d}", lambda k=k: _pruned(kit, k, prune, trained[k - 1], by_round[k - 1]))
        if off_path and k == s.rounds and k in retrain:
            break  # the last ticket is trained at full T below; training it on the search path would be wasted
        trained[k] = _train_round(kit, k, start, (by_round[k], prune), modifiers)
    retrained = {}
    for k in sorted(retrain):
        kit.event(f"retraining the round-{k} ticket at full T={cfg.model.timesteps}")
        retrained[k] = kit.train(f"retrain_{k:02d}", start, by_round[k], stream=STREAM.retrain(k),
                                 epochs=cfg.train.epochs - s.rewind_epoch, round=k, retrain=True)
    levels = _levels(by_round, trained, retrained, modifiers, off_path)
    return RoundsResult(levels, by_round, dict(m.record(trained) for m in modifiers))


def _train_round(kit: MethodKit, k: int, start: dict, rule: tuple[M.Masks, PruneFn],
                 modifiers: Sequence[RoundModifier]) -> Trained:
    """Round ``k`` from ``start`` with its masks, at the T its modifiers give, with their hooks (round 0 also stores
    the rewind state). ``rule``: the round's masks and the pruning rule (for the mask the round hands on)."""
    masks, prune = rule
    cfg, s = kit.cfg, kit.cfg.search
    rewind = s.rewind_epoch if k == 0 else 0
    least = max([rewind, *(m.min_epochs(k) for m in modifiers)])
    plan = RoundPlan(k, masks, lambda weights: prune(k + 1, weights, masks), least)
    hooks = ((RewindHook(kit, rewind),) if k == 0 else ()) + tuple(h for m in modifiers for h in m.hooks(plan))
    timesteps = next((t for m in modifiers if (t := m.timesteps(k)) is not None), cfg.model.timesteps)
    epochs = search_epochs(cfg) - (0 if k == 0 else s.rewind_epoch)
    stops = "up to " if any(m.cuts_rounds for m in modifiers) else ""
    where = "dense" if k == 0 else f"sparsity {M.sparsity(masks):.2%}"
    kit.event(f"round {k}/{s.rounds}: {where}, {stops}{epochs} epochs"
              + (f" at T={timesteps}" if k > 0 else ""))
    return kit.train(f"round_{k:02d}", start, None if k == 0 else masks, stream=STREAM.round(k), epochs=epochs,
                     timesteps=timesteps, round=k, hooks=hooks, schedule=s.search_schedule)


def _pruned(kit: MethodKit, k: int, prune: PruneFn, previous: Trained, masks: M.Masks) -> M.Masks:
    """Masks of round k, pruned from round k-1's trained weights and ``masks``."""
    weights = previous.weights()
    ensure_finite(weights, f"pruning for round {k}", f"after round {k - 1} ")
    return prune(k, weights, masks)


def _levels(by_round: dict[int, M.Masks], trained: dict[int, Trained], retrained: dict[int, Trained],
            modifiers: Sequence[RoundModifier], off_path: bool) -> list[dict]:
    """Level k's search time is what rounds 0..k-1 spent (plus the modifiers' own work after them): the training a
    user needs before that ticket's own training. A retrained level is the ticket at full T; the others are final
    unless the rounds are off the tickets' path."""
    levels, spent = [], Spent()
    for k, masks in sorted(by_round.items()):
        on_path, full_t = trained.get(k), retrained.get(k)
        if full_t is not None:
            entry = full_t.level(f"round_{k:02d}", masks, round=k, spent=spent, final=True)
            entry["search_test_accuracy"] = on_path.test_accuracy if on_path else None
        else:
            entry = on_path.level(f"round_{k:02d}", masks, round=k, spent=spent, final=not off_path)
        levels.append(entry)
        if on_path is not None:
            spent = spent + on_path.spent
            for m in modifiers:
                spent = spent + m.spent_after(k)
    return levels
