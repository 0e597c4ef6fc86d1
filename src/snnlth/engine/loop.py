"""THE training loop. It trains and evaluates and returns metrics; it never touches files (callers persist state
through ``on_epoch_end``), so every search strategy drives this same loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from snnlth.config import TrainConfig
from snnlth.data.source import DataSource
from snnlth.engine.evaluate import autocast, evaluate, seq_correct, seq_loss
from snnlth.engine.fastpath import CpuKernelChoice, lif_neurons, lif_work, prepare
from snnlth.engine.graphed import GraphedStep, graph_blocker
from snnlth.engine.masking import MaskEnforcer
from snnlth.engine.optim import cosine_lr, set_lr
from snnlth.errors import ConfigError, NumericalError
from snnlth.parallel import SINGLE, Dist
from snnlth.snn.layers import set_sync_bn


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class EpochSpec:
    """One training epoch: which (of how many), at which T, on which data stream."""

    epoch: int
    epochs: int
    timesteps: int
    stream: int = 0


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: DataSource, cfg: TrainConfig,
                spec: EpochSpec, enforcer: MaskEnforcer | None = None,
                on_batch: Callable[[BatchInfo], None] | None = None,
                forward: Callable[..., torch.Tensor] | None = None, dist: Dist = SINGLE,
                graphed: GraphedStep | None = None) -> dict:
    """One pass over the training data; with an ``enforcer``, pruned weights get no update and stay exactly 0.
    ``forward``: what runs the model (default: the model; :func:`snnlth.engine.fastpath.prepare` gives a compiled
    or data-parallel wrapper). ``graphed``: forward, loss and backward replayed as a CUDA graph where it can. The
    loss and accuracy sums stay on the device: no host sync per batch. With ``dist``
    of several ranks each trains on its shard of every global batch; the row holds the sums over all ranks."""
    model.train()
    forward = model if forward is None else forward
    device = data.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    # a compiled model wants one batch shape: the ragged last batch is left out (as drop_last), not recompiled for
    static = cfg.compile
    seen = skipped = 0
    skip_bad = cfg.on_nan == "skip-batch"
    first_bad = torch.full((), -1, device=device, dtype=torch.long)  # the first non-finite batch, kept on the device
    batches = data.num_train // cfg.batch_size if static else -(-data.num_train // cfg.batch_size)
    timesteps, amp = spec.timesteps, cfg.amp
    _sync(device)
    start = time.perf_counter()
    for i, (x, y) in enumerate(data.train_batches(cfg.batch_size, cfg.seed, spec.stream, spec.epoch)):
        if static and len(y) != cfg.batch_size:
            break
        part = dist.shard(x, y)
        if part is None:
            break  # a ragged last batch smaller than the world: every rank leaves it out alike
        x, y, scale = part
        replayed = graphed.step(x, y, timesteps) if graphed is not None else None
        if replayed is not None:
            loss, logits_seq = replayed  # the gradients are in place already
        else:
            with autocast(device, amp):
                logits_seq = forward(x, timesteps)  # [T, B, C]
            loss = seq_loss(logits_seq, y)
        if skip_bad:  # asks the device every batch: the price of choosing skip-batch
            if not bool(torch.isfinite(loss)):
                skipped += 1
                continue
        else:
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), i, first_bad)
            if device.type == "cpu" or i % 50 == 49:  # free on CPU; on CUDA a sync every 50 batches
                _stop_if_bad(first_bad, spec)
        if replayed is None:
            optimizer.zero_grad(set_to_none=True)
            (loss * scale if scale != 1.0 else loss).backward()
        if enforcer is not None:
            enforcer.grads_()
        optimizer.step()
        if enforcer is not None:
            enforcer.weights_()
        loss_sum += loss.detach() * len(y)
        correct += seq_correct(logits_seq.detach(), y)
        seen += len(y)
        if on_batch is not None:
            on_batch(BatchInfo(spec.epoch, spec.epochs, i + 1, batches, loss_sum, correct, seen,
                               time.perf_counter() - start))
    _stop_if_bad(first_bad, spec)
    if dist.active:
        total = torch.stack([loss_sum.double(), correct.double(), torch.tensor(float(seen), device=device,
                                                                               dtype=torch.float64)])
        dist.all_reduce_sum(total)
        loss_sum, correct, seen = total[0], total[1].long(), int(total[2].item())
    _sync(device)
    seconds = time.perf_counter() - start
    row = {"train_loss": loss_sum.item() / max(seen, 1), "train_accuracy": 100.0 * correct.item() / max(seen, 1),
           "train_seconds": seconds, "images_per_second": seen / max(seconds, 1e-9)}
    if skipped:
        row["skipped_batches"] = skipped
    return row


def _stop_if_bad(first_bad: torch.Tensor, spec: EpochSpec) -> None:
    bad = int(first_bad)
    if bad >= 0:
        raise NumericalError(f"the training loss became NaN or inf at epoch {spec.epoch + 1}, batch {bad + 1}; the "
                             "run stops with its last checkpoint kept: lower --lr, or use --on-nan skip-batch")


@dataclass(frozen=True)
class Schedule:
    """What one call of :func:`fit` trains: a cosine schedule over ``epochs``, at ``timesteps`` (a number, or a
    function of the epoch: Early-Time decides T_early only at the end of its warm-up), on data stream ``stream``.
    The test set is evaluated every ``eval_every`` epochs and always after the last epoch (or an early stop)."""

    epochs: int
    timesteps: int | Callable[[int], int]
    stream: int = 0
    eval_every: int = 1
    stop_epoch: int | None = None  # train only up to this epoch (the schedule still spans ``epochs``)

    def timesteps_at(self, epoch: int) -> int:
        return int(self.timesteps(epoch)) if callable(self.timesteps) else int(self.timesteps)


class EpochHook(Protocol):
    """Runs after every training epoch, before the evaluation; returns True to stop training (Early-Bird). It may
    add fields to ``state.history[-1]``."""

    def after_epoch(self, model: nn.Module, state: FitState) -> bool: ...


_NOT_EVALUATED = {"test_loss": None, "test_accuracy": None, "spikes_per_image": None, "synops_per_image": None,
                  "macs_per_image": None, "energy_uj_per_image": None, "eval_seconds": 0.0}


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, data: DataSource, cfg: TrainConfig, schedule: Schedule,
        state: FitState | None = None, *, enforcer: MaskEnforcer | None = None, hooks: Sequence[EpochHook] = (),
        on_batch: Callable[[BatchInfo], None] | None = None,
        on_epoch_end: Callable[[FitState], None] | None = None, dist: Dist = SINGLE,
        lif_choice: CpuKernelChoice | None = None) -> FitState:
    """Train from ``state.epoch`` to the end of ``schedule`` (or a hook's stop), one history row per epoch.

    Per epoch: train, run ``hooks``, evaluate when due, then ``on_epoch_end`` (the caller persists). Data order and
    augmentation of epoch e are a pure function of (seed, stream, e), so resuming from a checkpointed state replays
    exactly the same batches, whatever the number of ranks. ``wall_seconds`` of a row covers training, hooks and
    evaluation. With ``dist`` of several ranks: data-parallel training (DDP), rank 0's buffers and stop decisions on
    every rank, each rank evaluating the whole test set with the same weights. ``lif_choice``: the run's record for
    ``--lif-kernel auto`` on CPU (one per search, shared by its phases; default: this call alone)."""
    state = state or FitState()
    end = schedule.epochs if schedule.stop_epoch is None else min(schedule.stop_epoch, schedule.epochs)
    if dist.active:
        try:
            set_sync_bn(model, cfg.sync_bn)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def work() -> float:  # what this process trains in this call, in LIF neuron-timesteps (``auto`` on CPU)
        if end <= state.epoch:
            return 0.0
        neurons = lif_neurons(model, data.sample(1, cfg.seed), schedule.timesteps_at(state.epoch))
        images = data.num_train // dist.world_size  # each rank trains its shard
        return lif_work(neurons, images, [schedule.timesteps_at(e) for e in range(state.epoch, end)])

    forward = prepare(model, cfg, data.device, wrap=(lambda m: dist.wrap(m, data.device)) if dist.active else None,
                      work=work, choice=lif_choice)
    eval_forward = model if dist.active else forward  # no buffer broadcasts in evaluation
    graphed = (GraphedStep(model, forward, cfg.amp)
               if cfg.cuda_graph and graph_blocker(model, data.device, dist.active) is None else None)
    for epoch in range(state.epoch, end):
        start = time.perf_counter()
        timesteps = schedule.timesteps_at(epoch)
        lr = cosine_lr(cfg.lr, epoch, schedule.epochs)
        set_lr(optimizer, lr)
        row = train_epoch(model, optimizer, data, cfg, EpochSpec(epoch, schedule.epochs, timesteps, schedule.stream),
                          enforcer, on_batch, forward, dist, graphed)
        dist.sync_buffers(model)
        state.history.append({"epoch": epoch + 1, "timesteps": timesteps, "lr": lr, **row})
        state.epoch = epoch + 1
        stop = dist.broadcast(any([hook.after_epoch(model, state) for hook in hooks]))  # a list: every hook runs
        last = stop or state.epoch == schedule.epochs
        if last or state.epoch % schedule.eval_every == 0:
            t0 = time.perf_counter()
            # spikes and operations are counted on the phase's last evaluation only (the level's numbers)
            test = evaluate(model, data, timesteps, cfg.eval_batch_size, cfg.amp, count=last, forward=eval_forward)
            state.history[-1].update(test_loss=test["loss"], test_accuracy=test["accuracy"],
                                     **{k: test[k] for k in ("spikes_per_image", "synops_per_image",
                                                             "macs_per_image", "energy_uj_per_image")},
                                     eval_seconds=time.perf_counter() - t0)
        else:
            state.history[-1].update(_NOT_EVALUATED)
        state.history[-1]["wall_seconds"] = time.perf_counter() - start
        if on_epoch_end is not None:
            on_epoch_end(state)
        if stop:
            break
    return state
