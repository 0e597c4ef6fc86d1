"""What every search strategy shares: the run context, resumable training phases, masks on disk, level records.

A *phase* is one call of the training loop (a round, a warm-up, a retraining) with a name. It is gated by its
artifact: a finished phase is loaded, not retrained; an interrupted one resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from snnlth import masks as M
from snnlth.config import SearchRunConfig
from snnlth.data.source import DataSource
from snnlth.engine.fastpath import CpuKernelChoice
from snnlth.engine.loop import BatchInfo, EpochHook, FitState, Schedule, fit
from snnlth.engine.masking import MaskEnforcer
from snnlth.engine.optim import load_optimizer_state, make_optimizer
from snnlth.errors import ConfigError, NumericalError
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


def ensure_finite(weights: M.Weights, what: str, after: str = "") -> None:
    """Stop ``what`` (a pruning step) with one line naming the tensor when weights are NaN or inf."""
    try:
        M.check_finite(weights)
    except NumericalError as exc:
        raise NumericalError(f"{what} stopped: {after}{exc} (the training diverged; lower --lr or turn off --amp)"
                             ) from None


def wall_seconds(row: dict) -> float:
    """A metrics row's wall clock; rows written before 0.2 (a resumed old run) had only training and evaluation."""
    return row.get("wall_seconds", row["train_seconds"] + row["eval_seconds"])


@dataclass(frozen=True)
class Phase:
    """One named, resumable call of the training loop: from ``start_state`` (masked by ``masks``) with a fresh
    optimiser and cosine schedule over ``epochs``, at ``timesteps`` (or T as a function of the epoch)."""

    name: str
    start_state: dict[str, torch.Tensor]
    masks: M.Masks | None
    timesteps: int | Callable[[int], int]
    epochs: int
    stream: int
    tags: dict[str, Any] = field(default_factory=dict)
    hooks: tuple[ResumableHook, ...] = ()
    lr_scale: float = 1.0  # the phase trains at lr_scale x --lr (the official Early-Bird code: 2x)


@dataclass
class PhaseResult:
    name: str
    history: list[dict]
    model_state: dict[str, torch.Tensor]

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
    def test_accuracy(self) -> float:
        return self.history[-1]["test_accuracy"]  # the last epoch of a phase is always evaluated

    @property
    def best_test_accuracy(self) -> float:
        return max(h["test_accuracy"] for h in self.history if h.get("test_accuracy") is not None)


@dataclass
class SearchContext:
    """Everything a search strategy works with: the config, the run store (all files), the data source, the device,
    a builder of fresh models (any :class:`~snnlth.models.protocol.TicketModel`), progress callbacks, and the
    metrics rows of the phases finished so far."""

    cfg: SearchRunConfig
    store: RunStore
    data: DataSource
    device: torch.device
    build: Callable[[], TicketModel]  # a fresh model on the CPU, initialised from the global RNG
    callbacks: Callbacks = field(default_factory=Callbacks)
    rows: list[dict] = field(default_factory=list)  # metrics of finished phases, in execution order
    twin: Callable[[], TicketModel] | None = None  # a builder of the ANN twin (snnlth's models only)
    dist: Dist = SINGLE  # this process's rank in a data-parallel search
    _shape_model: TicketModel | None = field(default=None, repr=False)
    _lif_choice: CpuKernelChoice = field(default_factory=CpuKernelChoice, repr=False)  # --lif-kernel auto, CPU

    # ---- models and states -------------------------------------------------------------------------------------
    def new_model(self) -> TicketModel:
        """The run's model initialised from its seed, on the device (the same init every time)."""
        torch.manual_seed(self.cfg.train.seed)
        return self.build().to(self.device)

    def shape_model(self) -> TicketModel:
        """A CPU model of the run's architecture, for names, shapes and counts only: built once, and without
        consuming the global RNG (training results never depend on whether it was built)."""
        if self._shape_model is None:
            with torch.random.fork_rng(devices=[]):
                self._shape_model = self.build()
        return self._shape_model

    def prunable_names(self, model: TicketModel) -> list[str]:
        """Prunable tensors minus ``--exclude``."""
        return select_prunable(model.prunable_names(), self.cfg.search.exclude)

    def sparsity_fields(self, masks: M.Masks) -> dict[str, Any]:
        """Exact sparsity of ``masks``: of the prunable tensors (excluded ones count as dense), of all parameters,
        and the count of pruned weights that report columns are matched by."""
        pruned = M.count_total(masks) - M.count_alive(masks)
        return {"sparsity_prunable": pruned / self.prunable_count(),
                "sparsity_all": pruned / sum(p.numel() for p in self.shape_model().parameters()),
                "pruned_weights": pruned}

    def prunable_count(self) -> int:
        """Weights of all prunable tensors, excluded ones included (the denominator of ``sparsity_prunable``)."""
        model = self.shape_model()
        names = set(model.prunable_names())
        return sum(p.numel() for n, p in model.named_parameters() if n in names)

    def level_tags(self, round_: int | None, masks: M.Masks) -> dict[str, Any]:
        """Fields every metrics row of a round carries, so a report of an unfinished run shows true sparsities."""
        return {"round": round_, **self.sparsity_fields(masks)}

    def weights(self, model: TicketModel, names: list[str]) -> M.Weights:
        params = dict(model.named_parameters())
        return {n: params[n] for n in names}

    def save_state_once(self, name: str, model: TicketModel) -> dict[str, torch.Tensor]:
        """Store ``model``'s state as the named state (init, rewind) unless stored; return the stored one."""
        return self.store.save_state_once(name, model.state_dict())

    def load_state(self, name: str) -> dict[str, torch.Tensor]:
        return self.store.load_state(name)

    def load_masks(self, key: str) -> M.Masks | None:
        return self.store.load_masks(key)

    def save_masks(self, key: str, masks: M.Masks) -> None:
        self.store.save_masks(key, masks)

    # ---- phases --------------------------------------------------------------------------------------------------
    def run_phase(self, model: TicketModel, phase: Phase) -> PhaseResult:
        """Train ``model`` through ``phase``; resumable from its last checkpoint, and skipped once done."""
        done = self.store.load_phase(phase.name)
        if done is not None:
            model.load_state_dict(done["model"])
            for hook, extra in zip(phase.hooks, done["extra"]):
                hook.load(extra)
            self.rows.extend(done["history"])
            return PhaseResult(phase.name, done["history"], done["model"])
        model.load_state_dict(phase.start_state)
        enforcer = MaskEnforcer(model, phase.masks) if phase.masks is not None else None
        if enforcer is not None:
            enforcer.weights_()
        train_cfg = dataclasses.replace(self.cfg.train, lr=self.cfg.train.lr * phase.lr_scale)
        optimizer = make_optimizer(model, train_cfg)
        state = FitState()
        ckpt = self.store.load_checkpoint(phase.name)
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            load_optimizer_state(optimizer, ckpt["optimizer"])
            state = FitState(ckpt["epoch"], list(ckpt["history"]))
            for hook, extra in zip(phase.hooks, ckpt["extra"]):
                hook.load(extra)
        label = _label(phase.tags)

        def on_epoch_end(st: FitState) -> None:
            fault_point(f"epoch:{phase.name}")
            start, row = time.perf_counter(), st.history[-1]
            row.update(phase=phase.name, **phase.tags)
            every = self.cfg.search.checkpoint_every
            with sigint_deferred():  # checkpoint and metrics rows together, whatever Ctrl-C does
                if st.epoch % every == 0 or row["test_accuracy"] is not None:  # evaluated: possibly the last epoch
                    self.store.save_checkpoint(phase.name, {
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": st.epoch,
                        "history": st.history, "extra": [hook.state() for hook in phase.hooks]})
                row["wall_seconds"] += time.perf_counter() - start
                self.write_metrics(st.history)
            if self.callbacks.on_epoch:
                self.callbacks.on_epoch(row)

        on_batch = (lambda info: self.callbacks.on_batch(info, label)) if self.callbacks.on_batch else None
        schedule = Schedule(phase.epochs, phase.timesteps, phase.stream, self.cfg.train.eval_every)
        try:
            fit(model, optimizer, self.data, train_cfg, schedule, state, enforcer=enforcer, hooks=phase.hooks,
                on_batch=on_batch, on_epoch_end=on_epoch_end, dist=self.dist, lif_choice=self._lif_choice)
        except NumericalError as exc:
            raise NumericalError(f"phase {phase.name}{f' ({label})' if label else ''}: {exc} "
                                 f"({_last_checkpoint(self.store, phase.name)})") from None
        blob = {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}, "history": state.history,
                "extra": [hook.state() for hook in phase.hooks]}
        self.store.save_phase(phase.name, blob)
        self.rows.extend(state.history)
        return PhaseResult(phase.name, state.history, blob["model"])

    def write_metrics(self, current: list[dict] = ()) -> None:
        self.store.write_metrics([*self.rows, *current])

    def event(self, message: str) -> None:
        if self.callbacks.on_event:
            self.callbacks.on_event(message)

    def record(self, name: str, compute: Callable[[], dict]) -> dict:
        """A JSON record computed once and reused on resume (e.g. the Early-Time choice)."""
        return self.store.record(name, compute)


def select_prunable(names: list[str], exclude: tuple[str, ...]) -> list[str]:
    """``names`` minus those ``exclude`` names, as a whole tensor name or a whole dotted prefix (``features.1`` drops
    ``features.1.0.weight``, never ``features.10.0.weight``). An entry that matches nothing is an error."""
    hit = lambda n, e: n == e or n.startswith(e + ".")  # noqa: E731
    for e in exclude:
        if not any(hit(n, e) for n in names):
            raise ConfigError(f"--exclude {e} matches no prunable tensor; give whole names or dotted prefixes of: "
                              f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}")
    return [n for n in names if not any(hit(n, e) for e in exclude)]


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
