"""Early-Time ticket (the paper's §3.3): choose how many timesteps the search needs from how fast the class
distribution of the accumulated output settles. Pure functions of logits, plus one measurement on a fixed batch."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from snnlth.data.source import DataSource
from snnlth.methods.kit import MethodKit
from snnlth.methods.phases import Spent


def kl_by_timestep(logits_seq: torch.Tensor, direction: str = "paper") -> dict[int, float]:
    """KL divergence between ``P_t`` and ``P_T`` for t = 2..T, batch-averaged; ``logits_seq: [T, B, C]``.

    ``P_t = softmax(mean of the first t logits)`` (the official code divides the accumulated output by t). ``paper``:
    ``KL(P_t || P_T)`` as in Eq. 1; ``code``: ``KL(P_T || P_t)`` as the official code computes it.
    """
    t_max = logits_seq.shape[0]
    steps = torch.arange(1, t_max + 1, device=logits_seq.device, dtype=torch.float32).view(-1, 1, 1)
    log_p = F.log_softmax(logits_seq.float().cumsum(0) / steps, dim=-1)  # [T, B, C]
    log_ref = log_p[-1]
    out = {}
    for t in range(2, t_max + 1):
        a, b = (log_p[t - 1], log_ref) if direction == "paper" else (log_ref, log_p[t - 1])
        out[t] = float((a.exp() * (a - b)).sum(-1).mean().clamp_min(0.0))
    return out


def choose_t_early(kl: dict[int, float], threshold: float, by: str = "t2",
                   candidates: tuple[int, ...] | None = None) -> tuple[int, dict[int, float]]:
    """Normalise by the t = 2 value (``by="max"``: by the largest value, as the official code) and return the
    smallest t (among ``candidates``, default all) whose normalised KL is below ``threshold`` (else the largest t,
    i.e. T), with the normalised curve. A KL of zero at t = 2 means the output does not change with t at all
    (typically no spike reaches the readout yet): nothing can be learned from it, so T is kept."""
    t_max = max(kl)
    base = kl[2] if by == "t2" else max(kl.values())
    if base <= 1e-12:
        return t_max, {t: 0.0 for t in kl}
    norm = {t: v / base for t, v in kl.items()}
    pool = sorted(t for t in norm if candidates is None or t in candidates)
    return next((t for t in pool if norm[t] < threshold), t_max), norm


OFFICIAL_CANDIDATES = (2, 3, 4)  # the official code tries these T_early only


def fixed_batch(data: DataSource, size: int, seed: int) -> torch.Tensor:
    """The same ``size`` training inputs (un-augmented) for a given seed: the batch the KL is measured on."""
    return data.sample(size, seed)


@torch.no_grad()
def measure_kl(model: nn.Module, x: torch.Tensor, timesteps: int, direction: str = "paper",
               chunk: int = 250, train_mode: bool = False) -> dict[int, float]:
    """Logits of ``x`` at ``timesteps`` in eval mode (``train_mode``: in train mode, as the official code, which
    also updates BatchNorm's running statistics), then :func:`kl_by_timestep`. One forward at full T gives every
    prefix: outputs of the first t steps do not depend on later steps."""
    was_training = model.training
    model.train(train_mode)
    logits = torch.cat([model(part, timesteps) for part in x.split(chunk)], dim=1)
    model.train(was_training)
    return kl_by_timestep(logits, direction)


class EarlyTimePlan:
    """Which T the search runs at, epoch by epoch, and the hook that makes the ``auto`` choice after the warm-up.

    ``off``: the search runs at full T. ``N``: at N from the start. ``auto``: the first ``et_warmup_epochs`` epochs of
    the dense run at full T, then the KL test on a fixed training batch picks ``t_early`` for the rest of the search.
    The choice is stored in ``early_time.json`` and reused on resume.
    """

    def __init__(self, kit: MethodKit) -> None:
        self.kit = kit
        s = kit.cfg.search
        self.full_t = kit.cfg.model.timesteps
        self.mode = s.early_time_mode
        self.warmup = s.et_warmup_epochs if self.mode == "auto" else 0
        self.t_early: int | None = None
        self.info: dict | None = None
        if self.mode == "off":
            self.t_early = self.full_t
        elif isinstance(self.mode, int):
            self.t_early = self.mode
            self.info = {"mode": "forced", "t_early": self.mode, "kl": {}}
        elif kit.store.has_record("early_time"):
            self._take(kit.record("early_time", dict))

    @property
    def active(self) -> bool:
        """True when the search runs at fewer timesteps than the final model (tickets need a full-T retraining)."""
        return self.t_early is not None and self.t_early < self.full_t

    def timesteps(self, epoch: int) -> int:
        if epoch < self.warmup or self.t_early is None:
            return self.full_t
        return self.t_early

    def _take(self, info: dict) -> None:
        self.info, self.t_early = info, int(info["t_early"])

    def _choose(self, model: nn.Module) -> dict:
        s, start = self.kit.cfg.search, time.perf_counter()
        x = fixed_batch(self.kit.data, s.et_batch, self.kit.cfg.train.seed)
        official = self.kit.cfg.train.quirks == "official"
        direction = "code" if official else s.et_kl
        kl = measure_kl(model, x, self.full_t, direction, train_mode=official)
        t_early, norm = choose_t_early(kl, s.et_threshold, by="max" if official else "t2",
                                       candidates=OFFICIAL_CANDIDATES if official else None)
        return {"mode": "auto", "t_early": t_early, "kl": {str(t): v for t, v in kl.items()},
                "kl_normalized": {str(t): v for t, v in norm.items()}, "threshold": s.et_threshold,
                "direction": direction, "warmup_epochs": self.warmup, "batch": int(x.shape[0]),
                "normalised_by": "max" if official else "t2", "seconds": time.perf_counter() - start}

    # EpochHook protocol
    def after_epoch(self, model: nn.Module, state) -> bool:
        if self.mode == "auto" and state.epoch == self.warmup and self.info is None:
            self._take(self.kit.record("early_time", lambda: self._choose(model)))
            if self.info["kl"]["2"] <= 1e-12:
                self.kit.event("Early-Time: the output does not change with t (KL = 0; too little training or no "
                               "spikes reach the readout?): keeping full T; try more --et-warmup-epochs")
            norm = ", ".join(f"t={t}: {v:.3f}" for t, v in self.info["kl_normalized"].items())
            self.kit.event(f"Early-Time: searching at T_early={self.t_early} of T={self.full_t} "
                           f"(normalised KL {norm}; threshold {self.info['threshold']})")
        return False

    def state(self) -> dict:
        return {}

    def load(self, state: dict) -> None:
        pass

    @property
    def selection_seconds(self) -> float:
        return float(self.info.get("seconds", 0.0)) if self.info else 0.0

    @property
    def spent(self) -> Spent:
        """The selection counts as search work (and wall clock), once."""
        return Spent.selection(self.selection_seconds)


class EarlyTime:
    """Early-Time as a modifier of round-based methods (:mod:`snnlth.methods.rounds`): round 0 at full T through the
    warm-up, then at T_early, as every later round; the selection counts as search work once, after round 0. With
    ``--early-time off`` it changes nothing (``early_time`` is null in the summary)."""

    cuts_rounds = False

    def __init__(self, kit: MethodKit) -> None:
        self.plan = EarlyTimePlan(kit)

    def timesteps(self, k: int):
        return self.plan.timesteps if k == 0 else self.plan.t_early

    def min_epochs(self, k: int) -> int:
        return self.plan.warmup if k == 0 else 0

    def hooks(self, plan) -> tuple:
        return (self.plan,) if plan.k == 0 else ()

    @property
    def off_path(self) -> bool:
        return self.plan.active

    def spent_after(self, k: int) -> Spent:
        return self.plan.spent if k == 0 else Spent()

    def record(self, trained: dict) -> tuple[str, dict | None]:
        return "early_time", self.plan.info
