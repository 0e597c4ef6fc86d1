"""Gradual magnitude pruning in one run, then rewinding (method ``gmp``).

One search run (at T_early with ``--early-time``; ``--search-epochs``/``--search-schedule`` where given) prunes
globally (``--scope``) by magnitude while it trains: the pruned count rises on Zhu & Gupta's cubic schedule,
``s_t = s_f · (1 − (1 − (t − t0)/(t1 − t0))³)``, from the rewind point t0 to t1 = ``--gmp-end`` of the run, one
pruning step every ``--gmp-every`` training steps (default a quarter epoch). s_f is IMP's sparsest level
(``--rounds`` at ``--prune-rate``), and each of IMP's levels on the way is taken with exactly IMP's survivor counts
when the schedule passes it. The mask is final at t1, so the run ends there. The ``--retrain-at`` levels are
rewound to the rewind state and trained in full at full T: an accuracy-vs-sparsity curve from one search run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from snnlth import masks as M
from snnlth.config import parse_retrain_at
from snnlth.engine.loop import batches_per_epoch
from snnlth.errors import ConfigError, RunDirError
from snnlth.methods.early_bird import ticket_spent
from snnlth.methods.early_time import EarlyTimePlan
from snnlth.methods.kit import MethodKit, ensure_finite
from snnlth.methods.levels import resolve_retrain_rounds
from snnlth.methods.registry import MethodResult, MethodSpec, register_method
from snnlth.methods.rounds import RewindHook, check_search_run, same_search, search_epochs
from snnlth.rng import STREAM
from snnlth.rundir.store import RunStore


def cubic_fraction(step: int, t0: int, t1: int) -> float:
    """Fraction of the final pruned count reached after ``step`` training steps: 0 up to ``t0``, 1 from ``t1``, the
    cubic ``1 − (1 − (step − t0)/(t1 − t0))³`` between (fast at first, slow at the end)."""
    if step <= t0:
        return 0.0
    if step >= t1:
        return 1.0
    return 1.0 - (1.0 - (step - t0) / (t1 - t0)) ** 3


def keep_at(dense: M.Survivors, final: M.Survivors, fraction: float) -> M.Survivors:
    """Survivors when ``fraction`` of the final pruned count is pruned: ``N − floor(fraction · (N − final))``, of
    the total (ints) or of each tensor (dicts); exactly ``final`` at fraction 1."""
    if isinstance(dense, int):
        return dense - int(fraction * (dense - final))
    return {n: dense[n] - int(fraction * (dense[n] - final[n])) for n in dense}


def _at_least(a: M.Survivors, b: M.Survivors) -> M.Survivors:
    return max(a, b) if isinstance(a, int) else {n: max(a[n], b[n]) for n in a}


def _at_most(a: M.Survivors, b: M.Survivors) -> M.Survivors:
    return min(a, b) if isinstance(a, int) else {n: min(a[n], b[n]) for n in a}


def prune_step(weights: M.Weights, alive: M.Masks, keep: M.Survivors, levels: list[M.Survivors],
               taken: int) -> tuple[M.Masks, dict[int, M.Masks]]:
    """One pruning step towards ``keep`` survivors from the masks ``alive``. Every level ``j > taken`` of
    ``levels`` (IMP's survivors of rounds 0..K) that ``keep`` reaches (in total) is taken first, with exactly its
    survivor counts, as the magnitude mask of ``weights`` among ``alive``. The new working mask keeps no more than
    the last level taken (per tensor too: the levels are nested, as IMP's) and never fewer than the next level not
    yet taken, so that level can always be taken exactly. Returns the new masks and the levels taken
    ``{j: masks}``."""
    taken_now: dict[int, M.Masks] = {}
    j = taken + 1
    while j < len(levels) and M.survivors_total(keep) <= M.survivors_total(levels[j]):
        taken_now[j] = M.keep_largest(weights, alive, levels[j])
        j += 1
    target = _at_most(keep, levels[j - 1])
    if j < len(levels):
        target = _at_least(target, levels[j])
    return M.keep_largest(weights, alive, target), taken_now


@dataclass(frozen=True)
class Steps:
    """When the run prunes, in training steps: from ``t0`` to ``t1``, every ``every`` steps (and at ``t1``);
    ``batches``: training steps per epoch."""

    t0: int
    t1: int
    every: int
    batches: int

    def due(self, step: int, last: int) -> int | None:
        """The latest pruning point in ``(last, step]``, or None."""
        point = self.t1 if step >= self.t1 else self.t0 + (step - self.t0) // self.every * self.every
        return point if point > max(last, self.t0) else None


class GradualPruning:
    """The epoch and batch hook of the gmp run: prunes on the cubic schedule after training steps (the loop puts
    the new masks into its enforcer), stores each IMP level as ``gmp_<round>`` when the schedule passes it, and
    ends the run at the epoch that takes the last one (never before ``min_epochs``: the rewind point, the
    Early-Time warm-up). Rows get ``gmp_sparsity`` (of the working mask) and ``gmp_levels`` (levels taken)."""

    def __init__(self, kit: MethodKit, levels: list[M.Survivors], steps: Steps, min_epochs: int = 0) -> None:
        self.kit, self.levels, self.steps, self.min_epochs = kit, levels, steps, min_epochs
        self.alive: M.Masks = kit.sizes.dense()
        self.last, self.taken = 0, 0
        self.taken_at: dict[int, int] = {}

    def current(self) -> M.Masks:
        return self.alive

    def after_step(self, model: torch.nn.Module, step: int) -> M.Masks | None:
        point = self.steps.due(step, self.last)
        if point is None:
            return None
        weights = self.kit.weights(model)
        ensure_finite(weights, f"gradual pruning at step {step}")
        keep = keep_at(self.levels[0], self.levels[-1], cubic_fraction(point, self.steps.t0, self.steps.t1))
        self.alive, new = prune_step(weights, self.alive, keep, self.levels, self.taken)
        for j, masks in new.items():
            self.kit.store.save_masks(f"gmp_{j:02d}", masks)  # the same masks again if a resumed epoch retakes it
            self.taken_at[j] = step
            self.kit.event(f"gmp: level {j} ({M.sparsity(masks):.2%} of the prunable weights) at step {step} "
                           f"(epoch {(step - 1) // self.steps.batches + 1})")
        self.taken, self.last = max([self.taken, *new]), point
        return self.alive

    def after_epoch(self, model, state) -> bool:
        state.history[-1].update(**self.kit.sizes.sparsity(self.alive), gmp_sparsity=M.sparsity(self.alive),
                                 gmp_levels=self.taken)
        return self.taken == len(self.levels) - 1 and state.epoch >= self.min_epochs

    def state(self) -> dict:
        return {"alive": M.pack(self.alive), "last": self.last, "taken": self.taken,
                "taken_at": {str(j): s for j, s in self.taken_at.items()}, "batches": self.steps.batches}

    def load(self, state: dict) -> None:
        if state.get("batches", self.steps.batches) != self.steps.batches:
            raise ConfigError(f"this gmp run counted {state['batches']} training steps per epoch, now "
                              f"{self.steps.batches} (--compile leaves the ragged last batch out): resume it with "
                              "the --compile setting it started with")
        self.alive, self.last, self.taken = M.unpack(state["alive"]), state["last"], state["taken"]
        self.taken_at = {int(j): s for j, s in state["taken_at"].items()}


def schedule_of(kit: MethodKit) -> Steps:
    """The pruning steps of this run (``--gmp-end``, ``--gmp-every``, ``--rewind-epoch``, the search epochs)."""
    cfg, s = kit.cfg, kit.cfg.search
    batches = batches_per_epoch(kit.data.num_train, cfg.train.batch_size, cfg.runtime.compile)
    t0 = s.rewind_epoch * batches
    t1 = max(t0 + 1, round(s.gmp_end * search_epochs(cfg) * batches))  # _check: gmp_end · epochs > rewind epoch
    return Steps(t0, t1, s.gmp_every or max(1, batches // 4), batches)


def _search(kit: MethodKit, init: dict, levels: list[M.Survivors], how: tuple[Steps, EarlyTimePlan]):
    """The pruning run (resumable; loaded once done) and its hook, which holds the steps each level was taken at."""
    (steps, plan), s = how, kit.cfg.search
    pruning = GradualPruning(kit, levels, steps, min_epochs=max(s.rewind_epoch, plan.warmup))
    search = kit.train("gmp_search", init, kit.sizes.dense(), stream=STREAM.round(0), round=0,
                       epochs=search_epochs(kit.cfg), timesteps=plan.timesteps, schedule=s.search_schedule,
                       hooks=(RewindHook(kit, s.rewind_epoch), plan, pruning), batch_hook=pruning, guard=True)
    return search, pruning


def run_gmp(kit: MethodKit, source: RunStore | None = None) -> MethodResult:
    cfg, s = kit.cfg, kit.cfg.search
    init, plan, steps = kit.init(), EarlyTimePlan(kit), schedule_of(kit)
    levels = kit.sizes.imp_survivors(s.prune_rate, s.rounds, s.scope)
    chosen = sorted(resolve_retrain_rounds(s.retrain_at, kit.sizes.imp_sparsities(s.prune_rate, s.rounds, s.scope))
                    - {0})
    if not chosen:
        raise ConfigError("--retrain-at names only the dense level 0; gmp's tickets are levels 1..--rounds")
    kit.event(f"gmp: one run of up to {search_epochs(cfg)} epochs pruning to "
              f"{1 - M.survivors_total(levels[-1]) / M.survivors_total(levels[0]):.2%}")
    # read first: a damaged level file is set aside with everything made after it, the run that took it included
    found = {j: kit.store.load_masks(f"gmp_{j:02d}") for j in chosen}
    search, pruning = _search(kit, init, levels, (steps, plan))
    found = {j: m if m is not None else kit.store.load_masks(f"gmp_{j:02d}") for j, m in found.items()}
    missing = [kit.store.masks_file(f"gmp_{j:02d}") for j, m in found.items() if m is None]
    if missing:
        raise RunDirError(f"{missing[0]} is missing but {kit.store.phase_file('gmp_search')} is there; delete that "
                          "phase file (and summary.json) and rerun to search again")
    start = init if s.rewind_epoch == 0 else kit.store.load_state("rewind")
    out = []
    for j in chosen:
        masks = found[j]
        kit.event(f"retraining the gmp ticket of level {j} ({M.sparsity(masks):.2%}) at full T={cfg.model.timesteps}")
        ticket = kit.train(f"retrain_gmp_{j:02d}", start, masks, stream=STREAM.retrain(j), round=j, retrain=True,
                           epochs=cfg.train.epochs - s.rewind_epoch)
        epoch = -(-pruning.taken_at[j] // steps.batches)
        out.append(ticket.level(f"gmp_{j:02d}", masks, round=j,
                                spent=ticket_spent(search.history, epoch, s.rewind_epoch, plan)))
    record = {"t0": steps.t0, "t1": steps.t1, "every": steps.every, "batches_per_epoch": steps.batches,
              "epochs_run": len(search.history), "search_test_accuracy": search.test_accuracy,
              "levels": [{"round": j, "step": pruning.taken_at[j]} for j in sorted(pruning.taken_at)]}
    return MethodResult(out, plan.info, extra={"gmp": record})


def _check(cfg) -> None:
    s = cfg.search
    check_search_run(cfg, "gmp")
    if s.gmp_end * search_epochs(cfg) <= s.rewind_epoch:
        raise ConfigError(f"--gmp-end {s.gmp_end} of {search_epochs(cfg)} search epochs ends the pruning before "
                          f"--rewind-epoch {s.rewind_epoch}; raise --gmp-end or lower --rewind-epoch")
    if all(parse_retrain_at(item) == 0 for item in s.retrain_at):
        raise ConfigError("--retrain-at names only the dense level 0; gmp's tickets are levels 1..--rounds")


register_method(MethodSpec(
    "gmp", "GMP", run_gmp, "gradual magnitude pruning in one run (cubic schedule through IMP's levels), the "
    "--retrain-at tickets rewound and trained in full",
    fields=("rounds", "prune_rate", "scope", "rewind_epoch", "gmp_end", "gmp_every", "search_epochs",
            "search_schedule", "retrain_at"), unused=same_search, early_time=True, check=_check))
