"""Iterative Magnitude Pruning with (late) rewinding, optionally searching at T_early (method ``imp``). The rounds
loop is shared with the random-pruning baseline, which only swaps the pruning rule.

Round 0 trains the dense net for E epochs from init and stores its state after R epochs. Round k >= 1 starts from
that stored state (weights, biases, BN parameters and running statistics, masked), a fresh optimiser and a fresh
cosine schedule over E - R epochs. After each round the surviving weights are pruned by ``prune_rate``.
"""

from __future__ import annotations

from collections.abc import Callable

from snnlth import masks as M
from snnlth.methods.base import Phase, PhaseResult, SearchContext, Spent, ensure_finite
from snnlth.methods.early_time import EarlyTimePlan
from snnlth.methods.levels import LevelSpec, level_entry, resolve_retrain_rounds
from snnlth.methods.registry import MethodResult, MethodSpec, register_method
from snnlth.methods.round_stop import RoundStopHook, stop_record
from snnlth.rng import STREAM
from snnlth.rundir.store import RunStore

PruneFn = Callable[[int, M.Weights, M.Masks], M.Masks]  # (next round, trained weights, current masks) -> masks


class RewindHook:
    """Stores the model state after ``epoch`` epochs of the dense run as ``rewind.pt`` (late rewinding)."""

    def __init__(self, ctx: SearchContext, epoch: int) -> None:
        self.ctx, self.epoch = ctx, epoch

    def after_epoch(self, model, state) -> bool:
        if self.epoch > 0 and state.epoch == self.epoch:
            self.ctx.save_state_once("rewind", model)
        return False

    def state(self) -> dict:
        return {}

    def load(self, state: dict) -> None:
        pass


def magnitude_rule(ctx: SearchContext) -> PruneFn:
    s = ctx.cfg.search
    return lambda _k, weights, masks: M.magnitude_prune(weights, masks, s.prune_rate, s.scope)


def run_rounds(ctx: SearchContext, prune: PruneFn, round_stop: bool = False
               ) -> tuple[list[dict], EarlyTimePlan, list[dict] | None]:
    """Rounds 0..K (and full-T retraining of the chosen levels when searching at T_early or stopping rounds early);
    returns the levels, the Early-Time plan and, with ``round_stop``, each round's stop record."""
    cfg, s = ctx.cfg, ctx.cfg.search
    epochs, rewind, k_max, full_t = cfg.train.epochs, s.rewind_epoch, s.rounds, cfg.model.timesteps
    model = ctx.new_model()
    init = ctx.save_state_once("init", model)
    names = ctx.prunable_names(model)
    plan = EarlyTimePlan(ctx)
    masks = ctx.load_masks("round_00") or M.ones_like(ctx.weights(model, names))
    ctx.save_masks("round_00", masks)
    by_round: dict[int, M.Masks] = {0: masks}  # every round's masks, stored once and kept here

    def stopper(k: int, alive: M.Masks, least: int = 0) -> tuple[RoundStopHook, ...]:
        rule = lambda weights, current: prune(k + 1, weights, current)  # noqa: E731 - the mask round k hands on
        return (RoundStopHook(ctx, names, alive, rule, least),) if round_stop else ()

    ctx.event(f"round 0/{k_max}: dense, {'up to ' if round_stop else ''}{epochs} epochs")
    trained: dict[int, PhaseResult] = {0: ctx.run_phase(model, Phase(
        "round_00", init, None, plan.timesteps, epochs, stream=STREAM.round(0), tags=ctx.level_tags(0, masks),
        hooks=(RewindHook(ctx, rewind), plan, *stopper(0, masks, max(rewind, plan.warmup)))))}
    off_path = plan.active or round_stop  # the search path's accuracies are not the tickets' (T_early, cut short)
    retrain = resolve_retrain_rounds(s.retrain_at, imp_sparsities(ctx, masks)) if off_path else set()
    start = init if rewind == 0 else ctx.load_state("rewind")
    for k in range(1, k_max + 1):
        masks = by_round[k] = _level_masks(ctx, k, names, prune, trained, by_round[k - 1])
        if off_path and k == k_max and k in retrain:
            break  # the last ticket is trained at full T below; training it at T_early would be wasted search
        ctx.event(f"round {k}/{k_max}: sparsity {M.sparsity(masks):.2%}, {'up to ' if round_stop else ''}"
                  f"{epochs - rewind} epochs at T={plan.t_early}")
        trained[k] = ctx.run_phase(model, Phase(f"round_{k:02d}", start, masks, plan.t_early, epochs - rewind,
                                                stream=STREAM.round(k), tags=ctx.level_tags(k, masks),
                                                hooks=stopper(k, masks)))
    stops = [stop_record(k, trained[k].history, epochs if k == 0 else epochs - rewind)
             for k in sorted(trained)] if round_stop else None
    if stops:
        ctx.event("round stop: " + ", ".join(f"round {r['round']} at epoch {r['stop_epoch']}/{r['epochs']}"
                                             for r in stops))
    retrained = {}
    for k in sorted(retrain):
        ctx.event(f"retraining the round-{k} ticket at full T={full_t}")
        retrained[k] = ctx.run_phase(model, Phase(f"retrain_{k:02d}", start, by_round[k], full_t, epochs - rewind,
                                                  stream=STREAM.retrain(k),
                                                  tags={**ctx.level_tags(k, by_round[k]), "retrain": True}))
    return _levels(ctx, by_round, plan, trained, retrained, off_path), plan, stops


def imp_sparsities(ctx: SearchContext, dense: M.Masks) -> list[float]:
    """``sparsity_prunable`` of every round's ticket (excluded tensors count as dense, as in the levels), from IMP's
    exact survivor counts."""
    s = ctx.cfg.search
    total, prunable = M.count_total(dense), ctx.prunable_count()
    return [(total - M.survivors_total(k)) / prunable for k in M.imp_survivors(dense, s.prune_rate, s.rounds, s.scope)]


def _level_masks(ctx: SearchContext, k: int, names: list[str], prune: PruneFn,
                 trained: dict[int, PhaseResult], prev: M.Masks) -> M.Masks:
    """Masks of round k: stored ones, or pruned from round k-1's trained weights and masks ``prev`` (then stored)."""
    key = f"round_{k:02d}"
    masks = ctx.load_masks(key)
    if masks is None:
        weights = {n: trained[k - 1].model_state[n] for n in names}
        ensure_finite(weights, f"pruning for round {k}", f"after round {k - 1} ")
        masks = prune(k, weights, prev)
        ctx.save_masks(key, masks)
    return masks


def _levels(ctx: SearchContext, by_round: dict[int, M.Masks], plan: EarlyTimePlan,
            trained: dict[int, PhaseResult], retrained: dict[int, PhaseResult], off_path: bool) -> list[dict]:
    """Level k's search time is what rounds 0..k-1 spent (plus the Early-Time selection, once the search is past it):
    the training a user needs before that ticket's own training."""
    levels, spent = [], Spent()
    for k, masks in sorted(by_round.items()):
        on_path, full_t = trained.get(k), retrained.get(k)
        if full_t is not None:
            entry = level_entry(ctx, LevelSpec(k, masks, f"round_{k:02d}", full_t, ctx.cfg.model.timesteps, spent,
                                               final=True))
            entry["search_test_accuracy"] = on_path.test_accuracy if on_path else None
        else:
            entry = level_entry(ctx, LevelSpec(k, masks, f"round_{k:02d}", on_path, plan.t_early, spent,
                                               final=not off_path))
        levels.append(entry)
        if on_path is not None:
            spent = spent + on_path.spent + (plan.spent if k == 0 else Spent())
    return levels


def run_imp(ctx: SearchContext, source: RunStore | None = None) -> MethodResult:
    levels, plan, stops = run_rounds(ctx, magnitude_rule(ctx), round_stop=ctx.cfg.search.round_stop == "mask")
    return MethodResult(levels, plan.info, extra={"round_stop": stops} if stops is not None else {})


def _unused(cfg) -> tuple[str, ...]:
    return ("round_stop_window", "round_stop_threshold") if cfg.search.round_stop == "off" else ()


register_method(MethodSpec(
    "imp", "IMP", run_imp, "Iterative Magnitude Pruning with (late) rewinding, one level per round",
    fields=("rounds", "prune_rate", "scope", "rewind_epoch", "round_stop", "round_stop_window",
            "round_stop_threshold"), unused=_unused, early_time=True, round_stop=True))
