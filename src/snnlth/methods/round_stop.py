"""Round stop (``--round-stop mask``): Early-Bird's rule applied inside each IMP round. After every epoch of a round
the hook draws the mask the round would hand to the next one (the pruning rule on the current weights); once the
newest differs from each of the previous q-1 by less than tau (a fraction of the weights alive in the round), the
round ends and IMP prunes and rewinds as usual. The mask is decided; the remaining epochs would only polish weights
that the rewind throws away."""

from __future__ import annotations

import time

from snnlth import masks as M
from snnlth.methods.kit import MethodKit, ensure_finite
from snnlth.methods.phases import Spent
from snnlth.methods.rounds import search_epochs


class RoundStopHook:
    """Epoch hook of one IMP round with masks ``alive``: keeps the last q masks the round would hand on (``rule`` of
    the current weights) and stops the round once they have settled, never before ``min_epochs`` (the rewind point,
    the Early-Time warm-up). Each row gets ``round_stop_distance`` (None until q masks exist) and
    ``round_stop_seconds`` (search work, like Early-Bird's)."""

    def __init__(self, kit: MethodKit, alive: M.Masks, rule, min_epochs: int = 0) -> None:
        s = kit.cfg.search
        self.kit, self.alive, self.rule, self.min_epochs = kit, alive, rule, min_epochs
        self.q, self.tau = s.round_stop_window, s.round_stop_threshold
        self.window: list[M.Masks] = []

    def after_epoch(self, model, state) -> bool:
        start = time.perf_counter()
        weights = self.kit.weights(model)
        ensure_finite(weights, f"round-stop mask at epoch {state.epoch}")
        self.window.append(self.rule(weights))
        del self.window[: -self.q]
        dist = M.max_distance(self.window, self.alive) if len(self.window) == self.q else None
        stop = dist is not None and dist < self.tau and state.epoch >= self.min_epochs
        state.history[-1].update(round_stop_distance=dist, round_stop_seconds=time.perf_counter() - start)
        return stop

    def state(self) -> dict:
        return {"window": [M.pack(m) for m in self.window]}

    def load(self, state: dict) -> None:
        self.window = [M.unpack(p) for p in state["window"]]


def stop_record(round_: int, history: list[dict], epochs: int) -> dict:
    """One entry of ``summary.json["round_stop"]``: the epochs a round ran of the ``epochs`` it was given, and the
    mask distance it stopped at (None if it ran to the end without settling)."""
    ran = len(history)
    last = history[-1].get("round_stop_distance") if history else None
    return {"round": round_, "stop_epoch": ran, "epochs": epochs, "stopped_early": ran < epochs,
            "distance": last}


class RoundStop:
    """Round stop as a modifier of round-based methods (:mod:`snnlth.methods.rounds`): each round's hook ends it once
    its next mask has settled, so the rounds leave the tickets' path (the ``--retrain-at`` levels are trained in full
    at the end). Its mask-distance work is in the rows (``round_stop_seconds``), counted as search."""

    cuts_rounds = True
    off_path = True

    def __init__(self, kit: MethodKit) -> None:
        self.kit = kit

    def timesteps(self, k: int) -> None:
        return None

    def min_epochs(self, k: int) -> int:
        return 0

    def hooks(self, plan) -> tuple[RoundStopHook, ...]:
        return (RoundStopHook(self.kit, plan.alive, plan.next_masks, plan.min_epochs),)

    def spent_after(self, k: int) -> Spent:
        return Spent()

    def record(self, trained: dict) -> tuple[str, list[dict]]:
        epochs, rewind = search_epochs(self.kit.cfg), self.kit.cfg.search.rewind_epoch
        stops = [stop_record(k, trained[k].history, epochs if k == 0 else epochs - rewind) for k in sorted(trained)]
        self.kit.event("round stop: " + ", ".join(f"round {r['round']} at epoch {r['stop_epoch']}/{r['epochs']}"
                                                  for r in stops))
        return "round_stop", stops
