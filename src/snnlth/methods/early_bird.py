"""Early-Bird tickets, unstructured (You et al. 2020, as the paper uses them): during one dense run, draw the global
magnitude mask at each target sparsity after every epoch; a target's ticket is found when the newest mask differs
from each of the previous q-1 by less than tau. Then each ticket is retrained at full T. By default the targets are
IMP's ticket sizes (``--target-sparsity imp``), so EB and IMP tickets share the paper's Table-1 columns."""

from __future__ import annotations

import time
from dataclasses import dataclass

from snnlth import masks as M
from snnlth.config import SearchConfig
from snnlth.methods.early_time import EarlyTimePlan
from snnlth.methods.kit import MethodKit, ensure_finite
from snnlth.methods.phases import Spent
from snnlth.methods.registry import MethodResult, MethodSpec, register_method
from snnlth.methods.rounds import RewindHook
from snnlth.rng import STREAM
from snnlth.rundir.store import RunStore


@dataclass(frozen=True)
class Target:
    """One Early-Bird target: the exact number of survivors ``keep`` (a total, or per tensor for ``--scope local``),
    its prunable sparsity, and the IMP round whose ticket size it copies (``--target-sparsity imp``)."""

    sparsity: float
    keep: M.Survivors
    imp_round: int | None = None


def resolve_targets(s: SearchConfig, dense: M.Masks) -> list[Target]:
    """``--target-sparsity`` as exact survivor counts, sparsest last: ``imp`` expands to IMP's rounds 1..K with
    IMP's per-round floor arithmetic (so EB and IMP tickets have the same sizes); a sparsity s keeps
    ``N - floor(s·N)`` (per tensor with ``--scope local``). Equal counts are tracked once."""
    total = M.count_total(dense)
    found: dict[int, Target] = {}
    for item in s.target_sparsity:
        if item == "imp":
            rounds = M.imp_survivors(dense, s.prune_rate, s.rounds, s.scope)
            new = [Target(1 - M.survivors_total(keep) / total, keep, k) for k, keep in enumerate(rounds) if k > 0]
        else:
            value = float(item)
            keep = (total - M.n_to_prune(value, total) if s.scope == "global"
                    else {n: m.numel() - M.n_to_prune(value, m.numel()) for n, m in dense.items()})
            new = [Target(value, keep)]
        for t in new:
            found.setdefault(M.survivors_total(t.keep), t)
    return [found[k] for k in sorted(found, reverse=True)]


class EarlyBirdTracker:
    """Epoch hook: keeps the last q masks per target and records each target's detection epoch. Stops the dense run
    once every target is detected and the rewind epoch has been reached. Its own time is search work: each row
    gets ``eb_seconds``."""

    def __init__(self, kit: MethodKit, targets: list[Target], min_epochs: int = 0) -> None:
        s = kit.cfg.search
        self.kit, self.targets, self.min_epochs = kit, targets, min_epochs
        self.q, self.tau = s.eb_window, s.eb_threshold
        self.windows: list[list[M.Masks]] = [[] for _ in self.targets]
        self.detected: list[int | None] = [None for _ in self.targets]

    def after_epoch(self, model, state) -> bool:
        start = time.perf_counter()
        weights = self.kit.weights(model)
        ensure_finite(weights, f"Early-Bird mask at epoch {state.epoch}")
        distances = []
        for i, target in enumerate(self.targets):
            if self.detected[i] is not None:
                distances.append(None)
                continue
            window = self.windows[i]
            window.append(M.mask_with_survivors(weights, target.keep))
            del window[: -self.q]
            dist = M.max_distance(window) if len(window) == self.q else None
            distances.append(dist)
            if dist is not None and dist < self.tau:
                self.detected[i] = state.epoch
                self.kit.store.save_masks(f"eb_{i}", window[-1])
                self.kit.event(f"Early-Bird: ticket at sparsity {target.sparsity:.2%} found at epoch {state.epoch} "
                               f"(max mask distance {dist:.4f} < {self.tau})")
        state.history[-1].update(eb_distance=distances, eb_seconds=time.perf_counter() - start)
        return all(d is not None for d in self.detected) and state.epoch >= self.min_epochs

    def finish(self, last_epoch: int) -> list[dict]:
        """Targets never detected keep their newest mask (converged = False)."""
        out = []
        for i, target in enumerate(self.targets):
            converged = self.detected[i] is not None
            if not converged and self.kit.store.load_masks(f"eb_{i}") is None:
                self.kit.store.save_masks(f"eb_{i}", self.windows[i][-1])
                self.kit.event(f"Early-Bird: no ticket at sparsity {target.sparsity:.2%} within {last_epoch} "
                               f"epochs (masks never settled below {self.tau}); using the last mask")
            out.append({"target_sparsity": target.sparsity, "imp_round": target.imp_round,
                        "survivors": M.survivors_total(target.keep),
                        "detection_epoch": self.detected[i] if converged else last_epoch, "converged": converged})
        return out

    def state(self) -> dict:
        return {"windows": [[M.pack(m) for m in w] for w in self.windows], "detected": list(self.detected)}

    def load(self, state: dict) -> None:
        self.windows = [[M.unpack(p) for p in w] for w in state["windows"]]
        self.detected = list(state["detected"])


def run_early_bird(kit: MethodKit, source: RunStore | None = None) -> MethodResult:
    cfg, s = kit.cfg, kit.cfg.search
    official = cfg.train.quirks == "official"  # the official code: dense run at 2x lr, tickets retrained from init
    init = kit.init()
    plan = EarlyTimePlan(kit)
    targets = resolve_targets(s, kit.sizes.dense())
    # the dense run goes on to the rewind epoch and to the end of the Early-Time warm-up (a run labelled +ET has
    # always made its choice)
    tracker = EarlyBirdTracker(kit, targets, min_epochs=max(s.rewind_epoch, plan.warmup))
    kit.event(f"Early-Bird search: dense training up to {cfg.train.epochs} epochs, targets "
              f"{', '.join(f'{t.sparsity:.2%}' for t in targets)}")
    search = kit.train("eb_search", init, None, stream=STREAM.round(0), round=0, timesteps=plan.timesteps,
                       hooks=(RewindHook(kit, s.rewind_epoch), plan, tracker), lr_scale=2.0 if official else 1.0)
    eb = tracker.finish(len(search.history))
    start = init if s.rewind_epoch == 0 or official else kit.store.load_state("rewind")
    levels = []
    for i, info in enumerate(eb):
        masks = kit.store.load_masks(f"eb_{i}")
        kit.event(f"retraining the Early-Bird ticket at sparsity {info['target_sparsity']:.2%} at full "
                  f"T={cfg.model.timesteps}")
        ticket = kit.train(f"retrain_eb_{i}", start, masks, stream=STREAM.eb_retrain(i), retrain=True,
                           epochs=cfg.train.epochs if official else cfg.train.epochs - s.rewind_epoch,
                           tags={"target": info["target_sparsity"]})
        spent = ticket_spent(search.history, info["detection_epoch"], 0 if official else s.rewind_epoch, plan)
        levels.append({**ticket.level(f"eb_{i}", masks, round=None, spent=spent), "eb_target": i,
                       "imp_round": info["imp_round"]})
    return MethodResult(levels, plan.info, eb)


def ticket_spent(history: list[dict], detected: int, rewind: int, plan: EarlyTimePlan) -> Spent:
    """What an Early-Bird ticket cost: the dense training (and mask-distance work) up to its detection epoch, or up to
    the rewind epoch its retraining starts from if that is later, plus the Early-Time selection if it fell within."""
    needed = max(detected, rewind)
    return Spent.of_rows(history[:needed]) + (plan.spent if plan.warmup and needed >= plan.warmup else Spent())


def _unused(cfg) -> tuple[str, ...]:
    return () if "imp" in cfg.search.target_sparsity else ("rounds", "prune_rate")


register_method(MethodSpec(
    "eb", "EB", run_early_bird, "Early-Bird tickets: masks drawn during one dense run, each retrained",
    fields=("target_sparsity", "eb_window", "eb_threshold", "rounds", "prune_rate", "scope", "rewind_epoch"),
    unused=_unused, early_time=True, early_time_fields=("early_time",)))
