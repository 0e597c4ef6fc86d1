"""THE training loop. It trains and evaluates and returns metrics; it never touches files (callers persist state
through ``on_epoch_end``), so every search strategy drives this same loop."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from snnlth.config import RuntimeConfig, TrainConfig
from snnlth.data.source import DataSource
from snnlth.engine.counting import COUNT_KEYS
from snnlth.engine.evaluate import autocast, evaluate, seq_correct
from snnlth.engine.fastpath import KernelChoice, lif_neurons, lif_work, prepare
from snnlth.engine.graphed import GraphedStep, graph_blocker
from snnlth.engine.masking import MaskEnforcer
from snnlth.engine.optim import schedule_lr
from snnlth.engine.recipe import Recipe
from snnlth.engine.sync_bn import set_sync_bn
from snnlth.errors import ConfigError, NumericalError
from snnlth.parallel import SINGLE, Dist
from snnlth.rundir.faults import nan_point


@dataclass
class BatchInfo:
    """Progress of one batch for a progress bar. Sums stay on the device; read them only when displaying."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int
    seconds: float

    @property
    def loss(self) -> float:
        return self.loss_sum.item() / max(self.seen, 1)

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct.item() / max(self.seen, 1)

    @property
    def images_per_second(self) -> float:
        return self.seen / max(self.seconds, 1e-9)


@dataclass
class FitState:
    """What a caller needs to checkpoint and resume: completed epochs and the metric history."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def best_test_accuracy(self) -> float | None:
        """Best of the evaluated epochs (``--eval-every`` leaves others without a test accuracy)."""
        accs = [h["test_accuracy"] for h in self.history if h.get("test_accuracy") is not None]
        return max(accs) if accs else None


@dataclass(frozen=True)
class FitSettings:
    """How :func:`fit` trains besides model, optimiser and data: the recipe's ``[train]`` section, the ``[runtime]``
    knobs, this process's rank in a data-parallel run, the run's LIF kernels (one :class:`KernelChoice` for all
    phases of a search; default: this call's own) and the callables of a Python recipe."""

    train: TrainConfig
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    dist: Dist = SINGLE
    kernels: KernelChoice | None = None
    recipe: Recipe = field(default_factory=Recipe)


class EpochHook(Protocol):
    """Runs after every training epoch, before the evaluation; returns True to stop training (Early-Bird). It may
    add fields to ``state.history[-1]``."""

    def after_epoch(self, model: nn.Module, state: FitState) -> bool: ...


class BatchHook(Protocol):
    """Changes the masks during training (gradual pruning): ``current()`` gives the masks to keep from the start of
    the call (None: the enforcer's own), ``after_step(model, step)`` runs after every optimiser step (``step``: the
    steps done in this phase, counted as ``epoch · batches + batch + 1``) and once more at the end of every epoch
    with ``(epoch + 1) · batches`` (a step it may have seen: a batch left out or skipped leaves no gap), and returns
    new masks, or None. Needs an enforcer (a phase trained with masks)."""

    def current(self) -> dict[str, torch.Tensor] | None: ...

    def after_step(self, model: nn.Module, step: int) -> dict[str, torch.Tensor] | None: ...


@dataclass(frozen=True)
class FitHooks:
    """What a caller plugs into :func:`fit`: the masks to keep (``enforcer``), epoch hooks, callbacks after each
    batch (progress) and each epoch (the caller persists there), and a ``batch_hook`` that changes the masks."""

    enforcer: MaskEnforcer | None = None
    epoch_hooks: Sequence[EpochHook] = ()
    on_batch: Callable[[BatchInfo], None] | None = None
    on_epoch_end: Callable[[FitState], None] | None = None
    batch_hook: BatchHook | None = None


@dataclass(frozen=True)
class EpochSpec:
    """One training epoch: which (of how many), at which T, on which data stream."""

    epoch: int
    epochs: int
    timesteps: int
    stream: int = 0


@dataclass(frozen=True)
class Stepper:
    """How one training batch is run: ``forward`` (the model, or its compiled or data-parallel wrapper),
    ``graphed`` (forward, loss and backward replayed as a CUDA graph where it can), the masks kept, the settings."""

    settings: FitSettings
    forward: Callable[..., torch.Tensor]
    graphed: GraphedStep | None = None
    enforcer: MaskEnforcer | None = None
    batch_hook: BatchHook | None = None


class _Sums:
    """The epoch's running sums on the device (no host sync per batch) and the first non-finite batch."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.first_bad = torch.full((), -1, device=device, dtype=torch.long)
        self.seen = self.skipped = 0

    def add(self, loss: torch.Tensor, logits_seq: torch.Tensor, y: torch.Tensor) -> None:
        self.loss += loss.detach() * len(y)
        self.correct += seq_correct(logits_seq.detach(), y)
        self.seen += len(y)

    def all_reduce(self, dist: Dist, device: torch.device) -> None:
        total = torch.stack([self.loss.double(), self.correct.double(),
                             torch.tensor(float(self.seen), device=device, dtype=torch.float64)])
        dist.all_reduce_sum(total)
        self.loss, self.correct, self.seen = total[0], total[1].long(), int(total[2].item())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batches_per_epoch(images: int, batch_size: int, static: bool = False) -> int:
    """Training batches of an epoch (``static``: a compiled model leaves the ragged last batch out)."""
    return images // batch_size if static else -(-images // batch_size)


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: DataSource, step: Stepper,
                spec: EpochSpec, on_batch: Callable[[BatchInfo], None] | None = None) -> dict:
    """One pass over the training data; with an enforcer, pruned weights get no update and stay exactly 0. The loss
    and accuracy sums stay on the device: no host sync per batch. With several ranks each trains on its shard of
    every global batch; the row holds the sums over all ranks."""
    model.train()
    cfg, dist, device = step.settings.train, step.settings.dist, data.device
    static = step.settings.runtime.compile  # a compiled model wants one batch shape: the ragged last batch is left out
    sums = _Sums(device)
    batches = batches_per_epoch(data.num_train, cfg.batch_size, static)
    _sync(device)
    start = time.perf_counter()
    for i, (x, y) in enumerate(data.train_batches(cfg.batch_size, cfg.seed, spec.stream, spec.epoch)):
        if static and len(y) != cfg.batch_size:
            break
        part = dist.shard(x, y)
        if part is None:
            break  # a ragged last batch smaller than the world: every rank leaves it out alike
        if not _train_batch(step, optimizer, part, spec, (i, sums)):
            continue
        if step.batch_hook is not None:
            _change_masks(step, model, spec.epoch * batches + i + 1)
        if on_batch is not None:
            on_batch(BatchInfo(spec.epoch, spec.epochs, i + 1, batches, sums.loss, sums.correct, sums.seen,
                               time.perf_counter() - start))
    _stop_if_bad(dist.first_bad(sums.first_bad), spec)
    if step.batch_hook is not None:  # the epoch's end counts as all its steps done (a batch left out or skipped)
        _change_masks(step, model, (spec.epoch + 1) * batches)
    if dist.active:
        sums.all_reduce(dist, device)
    _sync(device)
    seconds = time.perf_counter() - start
    row = {"train_loss": sums.loss.item() / max(sums.seen, 1),
           "train_accuracy": 100.0 * sums.correct.item() / max(sums.seen, 1),
           "train_seconds": seconds, "images_per_second": sums.seen / max(seconds, 1e-9)}
    if sums.skipped:
        row["skipped_batches"] = sums.skipped
    return row


def _change_masks(step: Stepper, model: nn.Module, done: int) -> None:
    """Ask the batch hook after a step; new masks go into the enforcer (the pruned weights zeroed at once)."""
    masks = step.batch_hook.after_step(model, done)
    if masks is not None:
        step.enforcer.set_(masks)


def _train_batch(step: Stepper, optimizer: torch.optim.Optimizer, part: tuple, spec: EpochSpec,
                 where: tuple[int, _Sums]) -> bool:
    """Forward, loss, backward and update of one batch ``part = (x, y, loss scale)``; False when it was skipped
    (``--on-nan skip-batch``). ``where``: the batch's index and the epoch's sums."""
    (x, y, scale), (i, sums) = part, where
    device = x.device
    replayed = step.graphed.step(x, y, spec.timesteps) if step.graphed is not None else None
    if replayed is not None:
        loss, logits_seq = replayed  # the gradients are in place already
    else:
        with autocast(device, step.settings.train.amp):
            logits_seq = step.forward(x, spec.timesteps)  # [T, B, C]
        loss = step.settings.recipe.loss_fn(step.settings.train)(logits_seq, y)
    loss = nan_point(loss, spec.epoch, i)
    dist = step.settings.dist
    if step.settings.runtime.on_nan == "skip-batch":  # asks the device every batch: the price of choosing it
        if not dist.all_true(torch.isfinite(loss)):  # every rank skips alike
            sums.skipped += 1
            return False
    else:
        sums.first_bad = torch.where((sums.first_bad < 0) & ~torch.isfinite(loss), i, sums.first_bad)
        if device.type == "cpu" or i % 50 == 49:  # free on CPU; on CUDA a sync every 50 batches
            _stop_if_bad(dist.first_bad(sums.first_bad), spec)  # the first bad batch of any rank, on every rank
    if replayed is None:
        optimizer.zero_grad(set_to_none=True)
        (loss * scale if scale != 1.0 else loss).backward()
    if step.enforcer is not None:
        step.enforcer.grads_()
    optimizer.step()
    if step.enforcer is not None:
        step.enforcer.weights_()
    sums.add(loss, logits_seq, y)
    return True


def _stop_if_bad(first_bad: torch.Tensor, spec: EpochSpec) -> None:
    bad = int(first_bad)
    if bad >= 0:
        raise NumericalError(f"the training loss became NaN or inf at epoch {spec.epoch + 1}, batch {bad + 1}; the "
                             "run stops with its last checkpoint kept: lower --lr, or use --on-nan skip-batch")


@dataclass(frozen=True)
class Schedule:
    """What one call of :func:`fit` trains: the run's --schedule over ``epochs``, at ``timesteps`` (a number, or a
    function of the epoch: Early-Time decides T_early only at the end of its warm-up), on data stream ``stream``.
    The test set is evaluated every ``--eval-every`` epochs and always after the last epoch (or an early stop)."""

    epochs: int
    timesteps: int | Callable[[int], int]
    stream: int = 0
    stop_epoch: int | None = None  # train only up to this epoch (the schedule still spans ``epochs``)

    def timesteps_at(self, epoch: int) -> int:
        return int(self.timesteps(epoch)) if callable(self.timesteps) else int(self.timesteps)

    @property
    def end(self) -> int:
        return self.epochs if self.stop_epoch is None else min(self.stop_epoch, self.epochs)


_NOT_EVALUATED = {"test_loss": None, "test_accuracy": None, **dict.fromkeys(COUNT_KEYS), "eval_seconds": 0.0}


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, data: DataSource, settings: FitSettings,
        schedule: Schedule, state: FitState | None = None, hooks: FitHooks = FitHooks()) -> FitState:
    """Train from ``state.epoch`` to the end of ``schedule`` (or a hook's stop), one history row per epoch.

    Per epoch: train, run the epoch hooks, evaluate when due, then ``hooks.on_epoch_end`` (the caller persists).
    Data order and augmentation of epoch e are a pure function of (seed, stream, e), so resuming from a checkpointed
    state replays exactly the same batches, whatever the number of ranks. ``wall_seconds`` of a row covers
    training, hooks and evaluation. With several ranks: data-parallel training (DDP), rank 0's buffers and stop
    decisions on every rank, each rank evaluating its slice of the test set, the counts added over the ranks."""
    state = state or FitState()
    if hooks.batch_hook is not None:
        if hooks.enforcer is None:
            raise ValueError("a batch hook changes masks: train with masks (an enforcer)")
        if (masks := hooks.batch_hook.current()) is not None:
            hooks.enforcer.set_(masks)  # a resumed phase: the masks it had reached
    step, eval_forward = _stepper(model, data, settings, schedule, state, hooks.enforcer)
    step = dataclasses.replace(step, batch_hook=hooks.batch_hook)
    for epoch in range(state.epoch, schedule.end):
        start = time.perf_counter()
        timesteps = schedule.timesteps_at(epoch)
        lr = schedule_lr(optimizer, settings.train, epoch, schedule.epochs)
        row = train_epoch(model, optimizer, data, step, EpochSpec(epoch, schedule.epochs, timesteps, schedule.stream),
                          hooks.on_batch)
        settings.dist.sync_buffers(model)
        state.history.append({"epoch": epoch + 1, "timesteps": timesteps, "lr": lr, **row})
        state.epoch = epoch + 1
        stop = settings.dist.broadcast(any([hook.after_epoch(model, state) for hook in hooks.epoch_hooks]))  # all run
        _evaluate_if_due(model, data, settings, (stop or state.epoch == schedule.epochs, timesteps), eval_forward,
                         state)
        state.history[-1]["wall_seconds"] = time.perf_counter() - start
        if hooks.on_epoch_end is not None:
            hooks.on_epoch_end(state)
        if stop:
            break
    return state


def _stepper(model: nn.Module, data: DataSource, settings: FitSettings, schedule: Schedule, state: FitState,
             enforcer: MaskEnforcer | None) -> tuple[Stepper, Callable]:
    """The batch runner of this call of :func:`fit` (the speed settings applied to ``model``), and what evaluation
    runs (the model itself under data-parallel training: no buffer broadcasts)."""
    dist, runtime = settings.dist, settings.runtime
    if dist.active:
        try:
            set_sync_bn(model, settings.train.sync_bn)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def work() -> float:  # what this process trains in this call, in LIF neuron-timesteps (``auto`` on CPU)
        if schedule.end <= state.epoch:
            return 0.0
        neurons = lif_neurons(model, data.sample(1, settings.train.seed), schedule.timesteps_at(state.epoch))
        images = data.num_train // dist.world_size  # each rank trains its shard
        return lif_work(neurons, images, [schedule.timesteps_at(e) for e in range(state.epoch, schedule.end)])

    forward = prepare(model, runtime, data.device, wrap=(lambda m: dist.wrap(m, data.device)) if dist.active else None,
                      work=work, choice=settings.kernels)
    graphed = (GraphedStep(model, forward, settings.train.amp, loss=settings.recipe.loss_fn(settings.train))
               if runtime.cuda_graph and graph_blocker(model, data.device, dist.active) is None else None)
    return Stepper(settings, forward, graphed, enforcer), (model if dist.active else forward)


def _evaluate_if_due(model: nn.Module, data: DataSource, settings: FitSettings, when: tuple[bool, int],
                     forward: Callable, state: FitState) -> None:
    """Evaluate on the test set after the last epoch of a phase (``when[0]``: counting spikes and operations, the
    level's numbers) and every ``--eval-every`` epochs, at T ``when[1]``; the row gets the results or Nones."""
    last, timesteps = when
    runtime = settings.runtime
    if not (last or state.epoch % runtime.eval_every == 0):
        state.history[-1].update(_NOT_EVALUATED)
        return
    t0 = time.perf_counter()
    test = evaluate(model, data, timesteps, runtime.eval_batch_size, settings.train.amp, count=last, forward=forward,
                    dist=settings.dist)  # each rank a slice of the test set
    state.history[-1].update(test_loss=test["loss"], test_accuracy=test["accuracy"], **{k: test[k] for k in COUNT_KEYS},
                             eval_seconds=time.perf_counter() - t0)
