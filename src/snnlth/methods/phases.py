"""Resumable training phases: one named call of the training loop (a round, a warm-up, a retraining), gated by its
artifact. A finished phase is loaded, not retrained; an interrupted one resumes from its last checkpoint. The same
trainer runs a whole ``snnlth train`` run (one phase) and every phase of every search method."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from snnlth import masks as M
from snnlth.config import RuntimeConfig, TrainConfig
from snnlth.data.source import DataSource
from snnlth.engine.fastpath import KernelChoice
from snnlth.engine.guard import LearningGuard
from snnlth.engine.loop import BatchHook, BatchInfo, EpochHook, FitHooks, FitSettings, FitState, Schedule, fit
from snnlth.engine.masking import MaskEnforcer
from snnlth.engine.optim import load_optimizer_state, make_optimizer
from snnlth.engine.recipe import Recipe
from snnlth.errors import NumericalError
from snnlth.models.protocol import TicketModel
from snnlth.parallel import SINGLE, Dist
from snnlth.rundir.atomic import sigint_deferred
from snnlth.rundir.faults import fault_point
from snnlth.rundir.store import RunStore


class ResumableHook(EpochHook, Protocol):
    """An epoch hook of a phase whose state rides in the phase's checkpoint (Early-Bird windows)."""

    def state(self) -> dict: ...

    def load(self, state: dict) -> None: ...


@dataclass
class Callbacks:
    """Progress of a run: after every batch (with the phase's label), after every epoch (its metrics row), and for
    every search event (one line)."""

    on_batch: Callable[[BatchInfo, str], None] | None = None
    on_epoch: Callable[[dict], None] | None = None
    on_event: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Spent:
    """Seconds spent, the way the paper counts search time: ``search`` is training (plus the Early-Time selection and
    the Early-Bird and round-stop mask-distance work); evaluation is apart; ``wall`` is everything, checkpoints
    included."""

    search: float = 0.0
    eval: float = 0.0
    wall: float = 0.0

    def __add__(self, other: Spent) -> Spent:
        return Spent(self.search + other.search, self.eval + other.eval, self.wall + other.wall)

    @classmethod
    def of_rows(cls, rows: list[dict]) -> Spent:
        return cls(sum(r["train_seconds"] + r.get("eb_seconds", 0.0) + r.get("round_stop_seconds", 0.0)
                       for r in rows),
                   sum(r["eval_seconds"] for r in rows), sum(wall_seconds(r) for r in rows))

    @classmethod
    def selection(cls, seconds: float) -> Spent:
        """The Early-Time selection: search work. It runs in an epoch hook, so the row's wall clock holds it."""
        return cls(seconds, 0.0, 0.0)


def wall_seconds(row: dict) -> float:
    """A metrics row's wall clock; rows written before 0.2 (a resumed old run) had only training and evaluation."""
    return row.get("wall_seconds", row["train_seconds"] + row["eval_seconds"])


@dataclass(frozen=True)
class Phase:
    """One named, resumable call of the training loop: from ``start_state`` (masked by ``masks``) with a fresh
    optimiser and learning-rate schedule (``--schedule``) over ``epochs``, at ``timesteps`` (or T as a function of
    the epoch), on data stream ``stream``. ``tags`` go into every metrics row; ``lr_scale``: the phase trains at
    ``lr_scale`` × lr (the official Early-Bird code: 2×); ``guard``: a dense phase, stopped with
    :class:`NotLearningError` when the network does not learn (unless ``--allow-chance``); ``schedule``: another
    lr schedule than ``--schedule``; ``batch_hook``: masks that change after training steps (its state rides in the
    checkpoint as one of ``hooks``)."""

    name: str
    start_state: dict[str, torch.Tensor]
    masks: M.Masks | None
    timesteps: int | Callable[[int], int]
    epochs: int
    stream: int
    tags: dict[str, Any] = field(default_factory=dict)
    hooks: tuple[ResumableHook, ...] = ()
    lr_scale: float = 1.0
    guard: bool = False  # a dense phase: stop if the network does not learn (snnlth.engine.guard)
    schedule: str | None = None  # the phase's lr schedule (a search run's --search-schedule); None: --schedule
    batch_hook: BatchHook | None = None  # changes the masks during the phase (gradual pruning); one of ``hooks``

    def __post_init__(self) -> None:
        if self.batch_hook is not None and not any(h is self.batch_hook for h in self.hooks):
            raise ValueError(f"phase {self.name}: its batch hook must be one of its hooks too (its state rides in "
                             "the checkpoint; a resumed phase would start from dense masks)")


@dataclass
class PhaseResult:
    """A finished phase: its metrics rows and the model state it ended with."""

    name: str
    history: list[dict]
    state: dict[str, torch.Tensor]

    @property
    def spent(self) -> Spent:
        return Spent.of_rows(self.history)

    @property
    def train_seconds(self) -> float:
        return sum(h["train_seconds"] for h in self.history)

    @property
    def eval_seconds(self) -> float:
        return sum(h["eval_seconds"] for h in self.history)

    @property
    def timesteps(self) -> int:
        return self.history[-1]["timesteps"]  # of its last epoch (an Early-Time round ends at T_early)

    @property
    def test_accuracy(self) -> float:
        return self.history[-1]["test_accuracy"]  # the last epoch of a phase is always evaluated

    @property
    def best_test_accuracy(self) -> float:
        return max(h["test_accuracy"] for h in self.history if h.get("test_accuracy") is not None)

    def weights(self, names: list[str] | tuple[str, ...]) -> M.Weights:
        """The trained values of the tensors ``names``."""
        return {n: self.state[n] for n in names}


class MetricsLog:
    """The metrics rows of a run's finished phases, in execution order, and ``metrics.jsonl`` written from them (with
    the rows of the phase in progress)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.rows: list[dict] = []

    def extend(self, rows: list[dict]) -> None:
        self.rows.extend(rows)

    def write(self, current: list[dict] = ()) -> None:
        self.store.write_metrics([*self.rows, *current])


@dataclass(frozen=True)
class RunParts:
    """What a run trains with: its config sections, data, device, process group, progress callbacks, and the
    callables of a Python recipe."""

    train: TrainConfig
    runtime: RuntimeConfig
    data: DataSource
    device: torch.device
    dist: Dist = SINGLE
    callbacks: Callbacks = field(default_factory=Callbacks)
    recipe: Recipe = field(default_factory=Recipe)


class PhaseTrainer:
    """Trains phases of one run into its store: resumable from their checkpoints, skipped once done, every row in
    the run's :class:`MetricsLog`. One :class:`~snnlth.engine.fastpath.KernelChoice` for all the run's phases."""

    def __init__(self, store: RunStore, parts: RunParts) -> None:
        self.store, self.parts = store, parts
        self.log = MetricsLog(store)
        self.kernels = KernelChoice()

    def train(self, model: TicketModel, phase: Phase) -> PhaseResult:
        """Train ``model`` through ``phase`` (it ends in the phase's final state)."""
        guard = self._guard(phase)
        done = self.store.load_phase(phase.name)
        if done is not None:
            model.load_state_dict(done["model"])
            for hook, extra in zip(phase.hooks, done["extra"]):
                hook.load(extra)
            self.log.extend(done["history"])
            result = PhaseResult(phase.name, done["history"], done["model"])
        else:
            result = self._train(model, phase, guard)
        if guard is not None:
            guard.check_end(model, result.history)  # also for a loaded phase: a rerun stops where the run did
        return result

    def _guard(self, phase: Phase) -> LearningGuard | None:
        if not phase.guard or self.parts.runtime.allow_chance:
            return None
        at = phase.timesteps if callable(phase.timesteps) else (lambda _epoch: phase.timesteps)
        return LearningGuard(self.parts.data, self.parts.train, self.parts.recipe.loss_fn(self.parts.train), at)

    def _train(self, model: TicketModel, phase: Phase, guard: LearningGuard | None) -> PhaseResult:
        model.load_state_dict(phase.start_state)
        enforcer = MaskEnforcer(model, phase.masks) if phase.masks is not None else None
        if enforcer is not None:
            enforcer.weights_()
        train_cfg = dataclasses.replace(self.parts.train, lr=self.parts.train.lr * phase.lr_scale,
                                        schedule=phase.schedule or self.parts.train.schedule)
        optimizer = make_optimizer(model, train_cfg, self.parts.recipe.optimizer, phase.lr_scale)
        state = self._resumed(model, optimizer, phase)
        settings = FitSettings(train_cfg, self.parts.runtime, self.parts.dist, self.kernels, self.parts.recipe)
        try:
            fit(model, optimizer, self.parts.data, settings, Schedule(phase.epochs, phase.timesteps, phase.stream),
                state, self._hooks(model, optimizer, phase, (enforcer, guard)))
        except NumericalError as exc:
            label = _label(phase.tags)
            raise NumericalError(f"phase {phase.name}{f' ({label})' if label else ''}: {exc} "
                                 f"({_last_checkpoint(self.store, phase.name)})") from None
        blob = {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}, "history": state.history,
                "extra": [hook.state() for hook in phase.hooks]}
        self.store.save_phase(phase.name, blob)
        self.log.extend(state.history)
        return PhaseResult(phase.name, state.history, blob["model"])

    def _resumed(self, model: TicketModel, optimizer: torch.optim.Optimizer, phase: Phase) -> FitState:
        ckpt = self.store.load_checkpoint(phase.name)
        if ckpt is None:
            return FitState()
        model.load_state_dict(ckpt["model"])
        load_optimizer_state(optimizer, ckpt["optimizer"])
        for hook, extra in zip(phase.hooks, ckpt["extra"]):
            hook.load(extra)
        return FitState(ckpt["epoch"], list(ckpt["history"]))

    def _hooks(self, model: TicketModel, optimizer: torch.optim.Optimizer, phase: Phase,
               kept: tuple[MaskEnforcer | None, LearningGuard | None]) -> FitHooks:
        (enforcer, guard), callbacks, every = kept, self.parts.callbacks, self.parts.runtime.checkpoint_every

        def on_epoch_end(st: FitState) -> None:
            fault_point(f"epoch:{phase.name}")
            start, row = time.perf_counter(), st.history[-1]
            row.update(phase=phase.name, **phase.tags)
            with sigint_deferred():  # checkpoint and metrics rows together, whatever Ctrl-C does
                if st.epoch % every == 0 or row["test_accuracy"] is not None:  # evaluated: possibly the last epoch
                    self.store.save_checkpoint(phase.name, {
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": st.epoch,
                        "history": st.history, "extra": [hook.state() for hook in phase.hooks]})
                row["wall_seconds"] += time.perf_counter() - start
                self.log.write(st.history)
            if callbacks.on_epoch:
                callbacks.on_epoch(row)

        label = _label(phase.tags)
        on_batch = (lambda info: callbacks.on_batch(info, label)) if callbacks.on_batch else None
        return FitHooks(enforcer, (*phase.hooks, *([guard] if guard else [])), on_batch, on_epoch_end,
                        phase.batch_hook)


def _label(tags: dict[str, Any]) -> str:
    """Progress-bar label of a phase: its round (or Early-Bird target), and whether it is a full-T retraining."""
    parts = [f"{k} {tags[k]}" for k in ("round", "target") if tags.get(k) is not None]
    return " ".join(parts + (["retrain"] if tags.get("retrain") else []))


def _last_checkpoint(store: RunStore, phase: str) -> str:
    """Where a rerun resumes a phase from, for messages."""
    path = store.phase_checkpoint(phase)
    if not path.exists():
        return "no checkpoint of this phase yet: a rerun starts it again"
    try:
        epoch = store.load_checkpoint(phase)["epoch"]
    except Exception:  # noqa: BLE001 - a message helper: never fail while reporting a failure
        return f"last checkpoint {path}"
    return f"last good checkpoint {path}, epoch {epoch}"
