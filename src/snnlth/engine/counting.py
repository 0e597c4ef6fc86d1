"""What the counting evaluation (the last one of a phase) measures besides accuracy and loss: synaptic operations as
NeuroBench 2.3 counts them (:mod:`snnlth.engine.opcount`), energy from them, neuron activity, connection sparsity,
and accuracy, firing and operations at every T' = t <= T (the network is causal: the first t steps of a run at T are
a run at T' = t, and its prediction is ``argmax Σ_{s<=t} logits_seq[s]``).

A network with recurrent layers, whose operations NeuroBench counts by rules not implemented here, gets the
uniform-activity estimate of :class:`~snnlth.engine.energy.OpCounter` instead, and ``energy_model`` says so.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from snnlth.engine.activity import ActivityTally
from snnlth.engine.energy import OpCounter, energy_uj
from snnlth.engine.opcount import OpTally, connection_sparsity, reduce_tally, uncountable_layers

EXACT = "neurobench-effective-ops"
ESTIMATE = "uniform-activity estimate"

# the keys of a counting evaluation (None in every other evaluated or not-evaluated row); see docs/results.md
COUNT_KEYS = ("spikes_per_image", "synops_per_image", "macs_per_image", "energy_uj_per_image",
              "effective_acs_per_image", "effective_macs_per_image", "dense_ops_per_image", "activation_sparsity",
              "connection_sparsity", "energy_model", "per_timestep")


def step_correct(logits_seq: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[T]``: right predictions of ``argmax Σ_{s<=t} logits_seq[s]`` for every t; the last is exactly
    :func:`~snnlth.engine.evaluate.seq_correct` (the same sum, not a cumulative one)."""
    cum = logits_seq.cumsum(0)
    cum[-1] = logits_seq.sum(0)
    return (cum.argmax(-1) == y).sum(1)


class EvalCounts:
    """Context manager over one evaluation at ``timesteps``: :meth:`begin` before each forward on ``batch`` images,
    :meth:`add` after it; everything stays on the device until :meth:`results`."""

    def __init__(self, model: nn.Module, timesteps: int) -> None:
        self.model, self.timesteps = model, timesteps
        self.exact = not uncountable_layers(model)
        self.ops = OpTally(model) if self.exact else None
        self.estimate = None if self.exact else OpCounter(model)
        self.activity = ActivityTally(model)
        self.tallies = [t for t in (self.ops, self.activity) if t is not None]
        for tally in self.tallies:
            tally.begin(timesteps, 0)
        self.correct: torch.Tensor | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> EvalCounts:
        for hooks in (*self.tallies, self.estimate):
            if hooks is not None:
                self._stack.enter_context(hooks)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def begin(self, batch: int) -> None:
        for tally in self.tallies:
            tally.begin(self.timesteps, batch)

    def add(self, logits_seq: torch.Tensor, y: torch.Tensor) -> None:
        for tally in self.tallies:
            tally.fold()
        hits = step_correct(logits_seq, y)
        self.correct = hits if self.correct is None else self.correct + hits

    def all_reduce(self, dist) -> None:
        """Sum everything counted over the ranks of an evaluation split between them."""
        if not dist.active:
            return
        for tally in self.tallies:
            reduce_tally(tally, dist)
        if self.correct is not None:
            dist.all_reduce_sum(self.correct)
        if self.estimate is not None:
            dist.all_reduce_sum(self.estimate.synops, self.estimate.macs)

    def results(self, images: int) -> dict:
        """The :data:`COUNT_KEYS` per image over ``images`` test images."""
        n = max(images, 1)
        nonzero, outputs, spikes = self.activity.per_step()
        ops = self._ops(n)
        acs, macs = ops["effective_acs_per_image"], ops["effective_macs_per_image"]
        correct = self.correct.tolist() if self.correct is not None else [0] * self.timesteps
        per_t, cum = [], [0.0] * 4
        for t in range(self.timesteps):
            cum = [c + v for c, v in zip(cum, (nonzero[t], outputs[t], *ops["steps"][t]))]
            per_t.append({"t": t + 1, "accuracy": 100.0 * correct[t] / n,
                          "firing_rate": cum[0] / cum[1] if cum[1] else None,
                          "effective_acs": cum[2] if self.exact else None,
                          "effective_macs": cum[3] if self.exact else None})
        total = sum(outputs)
        return {"spikes_per_image": spikes / n, "synops_per_image": ops["synops"], "macs_per_image": ops["macs"],
                "energy_uj_per_image": energy_uj(ops["synops"], ops["macs"]), "effective_acs_per_image": acs,
                "effective_macs_per_image": macs, "dense_ops_per_image": ops["dense"],
                "activation_sparsity": 1.0 - sum(nonzero) / total if total else None,
                "connection_sparsity": connection_sparsity(self.model),
                "energy_model": EXACT if self.exact else ESTIMATE, "per_timestep": per_t}

    def _ops(self, n: int) -> dict:
        """Operations per image: exact ones (the old keys ``synops``/``macs`` equal to them) or the estimate."""
        if self.ops is None:
            synops, macs = (v / n for v in self.estimate.totals())
            return {"synops": synops, "macs": macs, "dense": None, "effective_acs_per_image": None,
                    "effective_macs_per_image": None, "steps": [(0.0, 0.0)] * self.timesteps}
        counts = self.ops.counts()
        return {"synops": counts.effective_acs, "macs": counts.effective_macs, "dense": counts.dense,
                "effective_acs_per_image": counts.effective_acs, "effective_macs_per_image": counts.effective_macs,
                "steps": [(s["effective_acs"], s["effective_macs"]) for s in counts.per_timestep]}
