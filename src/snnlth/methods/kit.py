"""The method kit: what a ticket-search method works with. A method is a function ``run(kit, source) ->
MethodResult``; the kit gives it the config, the run store, the sizes and counts of the model, and one tool that
trains a phase and returns what a level is made of::

    init = kit.init()                                    # the model's initial state, stored once
    dense = kit.train("dense", init, None, stream=0, round=0)
    masks = kit.masks("one_shot", lambda: masks.magnitude_prune(dense.weights(), kit.sizes.dense(), 0.8))
    ticket = kit.train("ticket", init, masks, stream=1, round=1)
    return MethodResult([dense.level("dense", kit.sizes.dense(), round=0),
                         ticket.level("one_shot", masks, round=1, spent=dense.spent)])

Every phase is resumable and skipped once done, so a method written this way resumes after a kill for free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from snnlth import masks as M
from snnlth.config import SearchRunConfig
from snnlth.data.source import DataSource
from snnlth.errors import ConfigError, NumericalError
from snnlth.methods.levels import level_entry
from snnlth.methods.phases import Phase, PhaseResult, PhaseTrainer, ResumableHook, Spent
from snnlth.models.protocol import TicketModel
from snnlth.rundir.store import RunStore


@dataclass(frozen=True)
class Sizes:
    """Names, shapes and counts of a model, for mask arithmetic and the exact sparsity of levels.

    Attributes:
        names: the prunable tensors minus ``--exclude``, in the model's order.
        prunable: weights of all prunable tensors, excluded ones included (the denominator of ``sparsity_prunable``).
        parameters: all parameters (the denominator of ``sparsity_all``).
        shapes: the shape of every parameter.
        dense_bytes: bytes of the dense fp32 state dict; ``element_bytes``: bytes per entry of each prunable tensor.
    """

    names: tuple[str, ...]
    prunable: int
    parameters: int
    shapes: dict[str, tuple[int, ...]]
    dense_bytes: int
    element_bytes: dict[str, int]

    @classmethod
    def of(cls, model: torch.nn.Module, exclude: tuple[str, ...]) -> Sizes:
        params = dict(model.named_parameters())
        names = model.prunable_names()
        state = model.state_dict()
        return cls(tuple(select_prunable(names, exclude)), sum(params[n].numel() for n in names),
                   sum(p.numel() for p in params.values()), {n: tuple(p.shape) for n, p in params.items()},
                   sum(t.numel() * t.element_size() for t in state.values()),
                   {n: state[n].element_size() for n in names})

    def dense(self) -> M.Masks:
        """All-True masks of the prunable tensors (round 0)."""
        return {n: torch.ones(self.shapes[n], dtype=torch.bool) for n in self.names}

    def sparsity(self, masks: M.Masks) -> dict[str, Any]:
        """Exact sparsity of ``masks``: of the prunable tensors (excluded ones count as dense), of all parameters,
        and the count of pruned weights that report columns are matched by."""
        pruned = M.count_total(masks) - M.count_alive(masks)
        return {"sparsity_prunable": pruned / self.prunable, "sparsity_all": pruned / self.parameters,
                "pruned_weights": pruned}

    def storage(self, masks: M.Masks) -> dict[str, int]:
        """Bytes of the dense fp32 state dict vs a ticket stored as 1 mask bit per prunable entry + fp32 survivors +
        the other tensors as they are (what ``snnlth export`` writes, without its small header)."""
        masked = sum(m.numel() * self.element_bytes[n] for n, m in masks.items())
        ticket = self.dense_bytes - masked + sum((m.numel() + 7) // 8 + int(m.sum()) * 4 for m in masks.values())
        return {"dense_bytes": self.dense_bytes, "ticket_bytes": ticket}

    def imp_survivors(self, rate: float, rounds: int, scope: str) -> list[M.Survivors]:
        """IMP's exact survivor counts of rounds 0..``rounds`` at ``rate`` (see :func:`snnlth.masks.imp_survivors`)."""
        return M.imp_survivors(self.dense(), rate, rounds, scope)

    def imp_sparsities(self, rate: float, rounds: int, scope: str) -> list[float]:
        """``sparsity_prunable`` of every IMP round's ticket (excluded tensors count as dense, as in the levels)."""
        total = sum(torch.Size(self.shapes[n]).numel() for n in self.names)
        return [(total - M.survivors_total(k)) / self.prunable for k in self.imp_survivors(rate, rounds, scope)]


@dataclass
class Trained(PhaseResult):
    """A finished phase of a method (:class:`~snnlth.methods.phases.PhaseResult`), which can say what level it
    makes."""

    kit: MethodKit | None = None

    def weights(self, names: list[str] | tuple[str, ...] | None = None) -> M.Weights:
        """The trained values of the prunable tensors (or of ``names``)."""
        return super().weights(self.kit.sizes.names if names is None else names)

    def level(self, masks_key: str, masks: M.Masks, *, round: int | None, spent: Spent | None = Spent(),
              final: bool = True) -> dict:
        """The level this phase trained: the ticket ``masks`` (stored as ``masks_key`` unless they are), its round
        (None for an Early-Bird ticket), the search work ``spent`` before it (None: it searched nothing itself, as
        a reinit of another run's masks), and whether it is a ticket trained at the final T (``final``) or an
        accuracy on the search path (at T_early, or of a round cut short)."""
        return self.kit.level(self, masks_key, masks, round=round, spent=spent, final=final)


class MethodKit:
    """The tools of a method: ``cfg``, ``store`` (every file of the run), ``sizes``, ``data`` and ``device``, the
    working ``model``, and :meth:`train` (a resumable phase), :meth:`masks` (stored once), :meth:`record` (a JSON
    record computed once), :meth:`event` (a progress line)."""

    def __init__(self, cfg: SearchRunConfig, trainer: PhaseTrainer, build: Callable[[], TicketModel],
                 twin: Callable[[], TicketModel] | None = None) -> None:
        self.cfg, self.trainer, self.build, self._twin = cfg, trainer, build, twin
        self.store: RunStore = trainer.store
        self.data: DataSource = trainer.parts.data
        self.device: torch.device = trainer.parts.device
        with torch.random.fork_rng(devices=[]):  # names and counts only: training never depends on this model
            shape = build()
        self.sizes = Sizes.of(shape, cfg.search.exclude)
        self.identity: dict = shape.identity()  # the architecture, as the run's header records it
        self._model: TicketModel | None = None

    @property
    def model(self) -> TicketModel:
        """The model the phases train (one object, its state loaded per phase), initialised from the run's seed."""
        if self._model is None:
            torch.manual_seed(self.cfg.train.seed)
            self._model = self.build().to(self.device)
        return self._model

    def loss(self, out_seq: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The run's training loss of ``out_seq: [T, B, C]`` against ``y: [B]`` (``--loss``, or a Python recipe's)."""
        return self.trainer.parts.recipe.loss_fn(self.cfg.train)(out_seq, y)

    def weights(self, model: torch.nn.Module) -> M.Weights:
        """The live prunable tensors of ``model`` (an epoch hook's view of the weights being trained)."""
        params = dict(model.named_parameters())
        return {n: params[n] for n in self.sizes.names}

    def init(self) -> dict[str, torch.Tensor]:
        """The model's initial state, stored as ``init`` the first time (a resumed run gets the original)."""
        return self.store.save_state_once("init", self.model.state_dict())

    def twin(self) -> MethodKit:
        """A kit over the model's ANN twin (ReLU for LIF, the same parameters), writing into the same run."""
        if self._twin is None:
            raise ConfigError("this method trains the ANN twin of the model, which only snnlth's own architectures "
                              "have; use one of them (`snnlth search --model ...`)")
        return MethodKit(self.cfg, self.trainer, self._twin)

    def train(self, name: str, start: dict[str, torch.Tensor], masks: M.Masks | None, *, stream: int,
              **how: Any) -> Trained:
        """Train the phase ``name`` from the state ``start`` with ``masks`` kept (None: dense), on data stream
        ``stream``; resumable, and loaded once done. ``how``: ``timesteps`` (default T; a function of the epoch for
        Early-Time's warm-up), ``epochs`` (default ``--epochs``), ``round`` (written into its rows with the masks'
        sparsity), ``retrain`` (a full-T retraining), ``tags`` (more row fields), ``hooks`` (epoch hooks),
        ``lr_scale``, ``schedule`` (an lr schedule other than ``--schedule``), ``batch_hook`` (masks changed during
        the phase, :class:`~snnlth.engine.loop.BatchHook`; also give it in ``hooks``), ``guard`` (default: a dense
        phase that is not a retraining): stop the run when the network does not learn (:mod:`snnlth.engine.guard`)."""
        dense = masks if masks is not None else self.sizes.dense()
        changing = how.get("batch_hook") is not None  # its hook writes the sparsity it reached into each row
        tags = {"round": how.get("round"), **({} if changing else self.sizes.sparsity(dense)), **how.get("tags", {})}
        if how.get("retrain"):
            tags["retrain"] = True
        phase = Phase(name, start, masks, how.get("timesteps", self.cfg.model.timesteps),
                      how.get("epochs", self.cfg.train.epochs), stream, tags, tuple(how.get("hooks", ())),
                      how.get("lr_scale", 1.0), guard=how.get("guard", masks is None and not how.get("retrain")),
                      schedule=how.get("schedule"), batch_hook=how.get("batch_hook"))
        done = self.trainer.train(self.model, phase)
        return Trained(done.name, done.history, done.state, kit=self)

    def masks(self, key: str, make: Callable[[], M.Masks]) -> M.Masks:
        """The masks stored as ``key``, or ``make()`` stored as ``key`` (once: a resumed run gets the same)."""
        found = self.store.load_masks(key)
        if found is None:
            found = make()
            self.store.save_masks(key, found)
        return found

    def level(self, trained: PhaseResult, masks_key: str, masks: M.Masks, *, round: int | None,
              spent: Spent | None, final: bool) -> dict:
        """See :meth:`Trained.level`."""
        if self.store.load_masks(masks_key) is None:
            self.store.save_masks(masks_key, masks)
        return level_entry(self.sizes, trained, (masks_key, masks), round=round, spent=spent, final=final)

    def record(self, name: str, compute: Callable[[], dict]) -> dict:
        """A JSON record computed once and reused on resume (the Early-Time choice)."""
        return self.store.record(name, compute)

    def event(self, message: str) -> None:
        on_event = self.trainer.parts.callbacks.on_event
        if on_event:
            on_event(message)


def select_prunable(names: list[str], exclude: tuple[str, ...]) -> list[str]:
    """``names`` minus those ``exclude`` names, as a whole tensor name or a whole dotted prefix (``features.1`` drops
    ``features.1.0.weight``, never ``features.10.0.weight``). An entry that matches nothing is an error."""
    hit = lambda n, e: n == e or n.startswith(e + ".")  # noqa: E731
    for e in exclude:
        if not any(hit(n, e) for n in names):
            raise ConfigError(f"--exclude {e} matches no prunable tensor; give whole names or dotted prefixes of: "
                              f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}")
    return [n for n in names if not any(hit(n, e) for e in exclude)]


def ensure_finite(weights: M.Weights, what: str, after: str = "") -> None:
    """Stop ``what`` (a pruning step) with one line naming the tensor when weights are NaN or inf."""
    try:
        M.check_finite(weights)
    except NumericalError as exc:
        raise NumericalError(f"{what} stopped: {after}{exc} (the training diverged; lower --lr or turn off --amp)"
                             ) from None


__all__ = ["MethodKit", "ResumableHook", "Sizes", "Spent", "Trained", "ensure_finite", "select_prunable"]
