"""Compressed IMP with learning-rate rewinding (method ``lrr``; Renda et al. 2020, Zimmer et al. 2023).

A dense search run (at T_early with ``--early-time``; ``--search-epochs``/``--search-schedule`` where given), then
a few rounds of a large prune rate: each prunes the surviving weights by magnitude (``--scope``) to the next of
IMP's levels ``--lrr-jump`` levels on (exactly IMP's survivor counts; the last round stops at IMP's sparsest level,
``--rounds`` at ``--prune-rate``) and retrains ``--lrr-epochs`` from the current weights, not rewound, with the
learning rate decaying from its peak again (a fresh ``--search-schedule``). The last mask needs no retraining of
its own. The levels ``--retrain-at`` names (IMP's levels, each taken to the nearest level a compressed round
reaches) are rewound to the rewind state and trained in full at full T: the rewound ticket, which a mask found
without rewinding may or may not be.
"""

from __future__ import annotations

from snnlth import masks as M
from snnlth.config import parse_retrain_at
from snnlth.errors import ConfigError
from snnlth.methods.early_time import EarlyTimePlan
from snnlth.methods.kit import MethodKit, Trained, ensure_finite
from snnlth.methods.levels import resolve_retrain_rounds
from snnlth.methods.registry import MethodResult, MethodSpec, register_method
from snnlth.methods.rounds import RewindHook, check_search_run, same_search, search_epochs
from snnlth.rng import STREAM
from snnlth.rundir.store import RunStore


def lrr_rounds(rounds: int, jump: int) -> list[int]:
    """The IMP rounds whose levels the compressed rounds reach: ``0, jump, 2·jump, ...``, ending at ``rounds``."""
    return [*range(0, rounds, jump), rounds]


def _round(kit: MethodKit, i: int, previous: Trained, masks: M.Masks, t_early: int) -> Trained:
    """Compressed round ``i``: from ``previous``'s trained state (weights, BN statistics), with ``masks``, for
    ``--lrr-epochs`` at ``t_early`` under a fresh ``--search-schedule``."""
    s = kit.cfg.search
    kit.event(f"lrr round {i}: sparsity {M.sparsity(masks):.2%}, {s.lrr_epochs} epochs from the current weights "
              f"at T={t_early}")
    return kit.train(f"lrr_{i:02d}", previous.state, masks, stream=STREAM.round(i), round=i,
                     epochs=s.lrr_epochs, timesteps=t_early, schedule=s.search_schedule)


def run_lrr(kit: MethodKit, source: RunStore | None = None) -> MethodResult:
    cfg, s = kit.cfg, kit.cfg.search
    init, plan = kit.init(), EarlyTimePlan(kit)
    survivors = kit.sizes.imp_survivors(s.prune_rate, s.rounds, s.scope)
    at = lrr_rounds(s.rounds, s.lrr_jump)
    sparsities = kit.sizes.imp_sparsities(s.prune_rate, s.rounds, s.scope)
    named = resolve_retrain_rounds(s.retrain_at, sparsities)  # IMP's rounds, each to lrr's nearest level
    chosen = sorted({min(range(1, len(at)), key=lambda i: abs(at[i] - r)) for r in named if r > 0})
    if not chosen:
        raise ConfigError("--retrain-at names only the dense level 0; name IMP's levels 1..--rounds (lrr's reach "
                          f"{', '.join(map(str, at[1:]))})")
    kit.event(f"lrr: dense search run of {search_epochs(cfg)} epochs, then rounds to IMP's levels "
              f"{', '.join(map(str, at[1:]))}")
    trained = {0: kit.train("lrr_00", init, None, stream=STREAM.round(0), round=0, epochs=search_epochs(cfg),
                            timesteps=plan.timesteps, schedule=s.search_schedule,
                            hooks=(RewindHook(kit, s.rewind_epoch), plan))}
    masks = {0: kit.masks("lrr_00", kit.sizes.dense)}
    spent = [trained[0].spent + plan.spent]  # search work before the masks of round i
    for i in range(1, len(at)):
        weights = trained[i - 1].weights()
        ensure_finite(weights, f"pruning for lrr round {i}", f"after round {i - 1} ")
        masks[i] = kit.masks(f"lrr_{i:02d}", lambda i=i, w=weights: M.keep_largest(w, masks[i - 1],
                                                                                    survivors[at[i]]))
        if i < len(at) - 1:
            trained[i] = _round(kit, i, trained[i - 1], masks[i], plan.t_early)
            spent.append(spent[-1] + trained[i].spent)
    start = init if s.rewind_epoch == 0 else kit.store.load_state("rewind")
    levels = []
    for i in chosen:
        kit.event(f"retraining the lrr ticket of round {i} ({M.sparsity(masks[i]):.2%}) at full "
                  f"T={cfg.model.timesteps}")
        ticket = kit.train(f"retrain_lrr_{i:02d}", start, masks[i], stream=STREAM.retrain(i), round=at[i],
                           retrain=True, epochs=cfg.train.epochs - s.rewind_epoch)
        levels.append({**ticket.level(f"lrr_{i:02d}", masks[i], round=at[i], spent=spent[i - 1]), "lrr_round": i})
    record = [{"round": i, "imp_round": at[i], "sparsity_prunable": kit.sizes.sparsity(masks[i])["sparsity_prunable"],
               "search_test_accuracy": trained[i].test_accuracy if i in trained else None} for i in masks]
    return MethodResult(levels, plan.info, extra={"lrr": record})


def _check(cfg) -> None:
    check_search_run(cfg, "lrr")
    if all(parse_retrain_at(item) == 0 for item in cfg.search.retrain_at):
        raise ConfigError("--retrain-at names only the dense level 0; name IMP's levels 1..--rounds")


register_method(MethodSpec(
    "lrr", "LRR", run_lrr, "compressed IMP with learning-rate rewinding: a few large pruning rounds retrained "
    "briefly from the current weights, the --retrain-at tickets rewound and trained in full",
    fields=("rounds", "prune_rate", "scope", "rewind_epoch", "lrr_jump", "lrr_epochs", "search_epochs",
            "search_schedule", "retrain_at"), unused=same_search, early_time=True, check=_check))

