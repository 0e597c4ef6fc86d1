"""Early-Bird tickets, unstructured (You et al. 2020, as the paper uses them): during one dense run, draw the global
magnitude mask at each target sparsity after every epoch; a target's ticket is found when the newest mask differs
from each of the previous q-1 by less than tau. Then each ticket is retrained at full T."""

from __future__ import annotations

from snnlth import masks as M
from snnlth.errors import NumericalError
from snnlth.search.base import SearchContext
from snnlth.search.early_time import EarlyTimePlan
from snnlth.search.imp import RewindHook
from snnlth.search.levels import level_entry


def max_distance(window: list[M.Masks]) -> float:
    """Largest normalised Hamming distance between the newest mask and each of the others in ``window``."""
    return max(M.hamming(window[-1], other) for other in window[:-1])


class EarlyBirdTracker:
    """Epoch hook: keeps the last q masks per target sparsity and records each target's detection epoch.
    Stops the dense run once every target is detected and the rewind epoch has been reached."""

    def __init__(self, ctx: SearchContext, names: list[str], min_epochs: int = 0) -> None:
        s = ctx.cfg.search
        self.ctx, self.names, self.min_epochs = ctx, names, min_epochs
        self.targets, self.q, self.tau = list(s.target_sparsity), s.eb_window, s.eb_threshold
        self.windows: list[list[M.Masks]] = [[] for _ in self.targets]
        self.detected: list[int | None] = [None for _ in self.targets]

    def after_epoch(self, model, state) -> bool:
        weights = self.ctx.weights(model, self.names)
        try:
            M.check_finite(weights)
        except NumericalError as exc:
            raise NumericalError(f"Early-Bird mask at epoch {state.epoch} stopped: {exc} (the training diverged; "
                                 "lower --lr or turn off --amp)") from None
        distances = []
        for i, target in enumerate(self.targets):
            if self.detected[i] is not None:
                distances.append(None)
                continue
            window = self.windows[i]
            window.append(M.mask_at_sparsity(weights, target, self.ctx.cfg.search.scope))
            del window[: -self.q]
            dist = max_distance(window) if len(window) == self.q else None
            distances.append(dist)
            if dist is not None and dist < self.tau:
                self.detected[i] = state.epoch
                self.ctx.save_masks(f"eb_{i}", window[-1])
                self.ctx.event(f"Early-Bird: ticket at sparsity {target:.2%} found at epoch {state.epoch} "
                               f"(max mask distance {dist:.4f} < {self.tau})")
        state.history[-1]["eb_distance"] = distances
        return all(d is not None for d in self.detected) and state.epoch >= self.min_epochs

    def finish(self, last_epoch: int) -> list[dict]:
        """Targets never detected keep their newest mask (converged = False)."""
        out = []
        for i, target in enumerate(self.targets):
            converged = self.detected[i] is not None
            if not converged and self.ctx.load_masks(f"eb_{i}") is None:
                self.ctx.save_masks(f"eb_{i}", self.windows[i][-1])
                self.ctx.event(f"Early-Bird: no ticket at sparsity {target:.2%} within {last_epoch} epochs "
                               f"(masks never settled below {self.tau}); using the last mask")
            out.append({"target_sparsity": target, "detection_epoch": self.detected[i] if converged else last_epoch,
                        "converged": converged})
        return out

    def state(self) -> dict:
        return {"windows": [[M.pack(m) for m in w] for w in self.windows], "detected": list(self.detected)}

    def load(self, state: dict) -> None:
        self.windows = [[M.unpack(p) for p in w] for w in state["windows"]]
        self.detected = list(state["detected"])


def run_early_bird(ctx: SearchContext) -> tuple[list[dict], EarlyTimePlan, list[dict]]:
    cfg, s = ctx.cfg, ctx.cfg.search
    epochs, rewind, full_t = cfg.train.epochs, s.rewind_epoch, cfg.model.timesteps
    model = ctx.new_model()
    init = ctx.save_state_once("init", model)
    names = ctx.prunable_names(model)
    plan = EarlyTimePlan(ctx)
    tracker = EarlyBirdTracker(ctx, names, min_epochs=rewind)
    ctx.event(f"Early-Bird search: dense training up to {epochs} epochs, targets {list(tracker.targets)}")
    search = ctx.run_phase("eb_search", model, init, None, plan.timesteps, epochs, stream=0, tags={"round": 0},
                           hooks=(RewindHook(ctx, rewind), plan, tracker))
    eb = tracker.finish(len(search.history))
    start = init if rewind == 0 else ctx.load_state("rewind")
    levels = []
    for i, info in enumerate(eb):
        masks = ctx.load_masks(f"eb_{i}")
        ctx.event(f"retraining the Early-Bird ticket at sparsity {info['target_sparsity']:.2%} at full T={full_t}")
        phase = ctx.run_phase(f"retrain_eb_{i}", model, start, masks, full_t, epochs - rewind, stream=200 + i,
                              tags={"target": info["target_sparsity"], "retrain": True})
        seconds = plan.selection_seconds + sum(h["train_seconds"] + h["eval_seconds"]
                                               for h in search.history[: info["detection_epoch"]])
        levels.append(level_entry(ctx, model, None, masks, phase, full_t, seconds, True, f"eb_{i}"))
    return levels, plan, eb
