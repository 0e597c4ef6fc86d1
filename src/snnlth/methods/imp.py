"""Iterative Magnitude Pruning with (late) rewinding (method ``imp``): the rounds of :mod:`snnlth.methods.rounds`
with the magnitude rule, combined with Early-Time (the search at T_early), round stop (rounds ended once their
next mask has settled) and a search schedule of its own (--search-epochs, --search-schedule: short rounds that anneal
early, the final tickets trained in full)."""

from __future__ import annotations

from snnlth.methods.early_time import EarlyTime
from snnlth.methods.kit import MethodKit
from snnlth.methods.registry import MethodResult, MethodSpec, register_method
from snnlth.methods.round_stop import RoundStop
from snnlth.methods.rounds import (
    RoundModifier,
    check_search_run,
    magnitude_rule,
    run_rounds,
    same_search,
    search_differs,
)
from snnlth.rundir.store import RunStore


def modifiers(kit: MethodKit) -> tuple[RoundModifier, ...]:
    """The modifiers the config asks for: Early-Time (a no-op when off) and round stop."""
    return (EarlyTime(kit), *((RoundStop(kit),) if kit.cfg.search.round_stop == "mask" else ()))


def run_imp(kit: MethodKit, source: RunStore | None = None) -> MethodResult:
    rounds = run_rounds(kit, magnitude_rule(kit), modifiers(kit))
    return MethodResult.of_rounds(rounds)


def _unused(cfg) -> tuple[str, ...]:
    s = cfg.search
    stop = ("round_stop_window", "round_stop_threshold") if s.round_stop == "off" else ()
    off_path = s.early_time != "off" or s.round_stop != "off" or search_differs(cfg)
    return stop + (() if off_path else ("retrain_at",)) + same_search(cfg)


register_method(MethodSpec(
    "imp", "IMP", run_imp, "Iterative Magnitude Pruning with (late) rewinding, one level per round",
    fields=("rounds", "prune_rate", "scope", "rewind_epoch", "round_stop", "round_stop_window",
            "round_stop_threshold", "search_epochs", "search_schedule", "retrain_at"),
    unused=_unused, early_time=True, round_stop=True,
    check=lambda cfg: check_search_run(cfg, "imp")))
