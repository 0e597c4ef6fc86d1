"""What a search returns, whichever way it was started (``snnlth.search(config)``, ``snnlth.find_ticket(net, ...)``):
a :class:`TicketSearch` over its run directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snnlth import masks as M
from snnlth.errors import ConfigError, RunDirError
from snnlth.models.protocol import TicketModel
from snnlth.rundir.store import RunStore

# what apply() puts a ticket into: (the model handed back, the TicketModel whose state dict the run trained)
Target = Callable[[], tuple[nn.Module, TicketModel]]


@dataclass(frozen=True)
class Level:
    """One ticket of a search: its round (None for an Early-Bird ticket), exact sparsity of the prunable weights
    and of all parameters, timesteps, test accuracy (percent), the training time spent before it (``search_seconds``,
    as the paper counts; None for a reinit level, which searched nothing), whether it is a final ticket (trained at
    full T), and its masks (pruned = False)."""

    index: int
    round: int | None
    sparsity: float
    sparsity_all: float
    timesteps: int
    accuracy: float | None
    search_seconds: float | None
    final: bool
    masks: M.Masks = field(repr=False)
    record: dict = field(repr=False)  # the level's entry of summary.json


@dataclass
class TicketSearch:
    """The result of a search: ``levels`` (every ticket, densest first), ``best`` (the sparsest final one),
    ``run_dir`` (a normal run directory: ``snnlth report`` / ``snnlth export`` work on it), ``summary`` (what
    ``summary.json`` holds), ``status`` (``searched``, ``resumed`` or ``done``), and :meth:`apply`."""

    run_dir: Path
    summary: dict[str, Any]
    status: str
    levels: list[Level]
    target: Target | None = field(default=None, repr=False)
    _built: tuple[nn.Module, TicketModel] | None = field(default=None, repr=False)

    @property
    def best(self) -> Level:
        """The sparsest final ticket (the one :meth:`apply` puts in by default)."""
        finals = [lv for lv in self.levels if lv.final] or self.levels
        return max(finals, key=lambda lv: lv.sparsity)

    @property
    def model(self) -> nn.Module:
        """The model :meth:`apply` puts tickets into: the network given to ``find_ticket`` (unchanged until then),
        or a fresh model of the run's architecture for ``snnlth.search``."""
        return self._target()[0]

    def apply(self, level: int | Level | None = None) -> nn.Module:
        """Put a trained ticket into :attr:`model`: its trained weights (and BatchNorm statistics), pruned weights
        exactly 0. ``level``: an index into ``levels``, a :class:`Level`, or None for :attr:`best`. Returns the
        model (in eval mode; it keeps its device)."""
        lv = self.best if level is None else level if isinstance(level, Level) else self._level(level)
        phase = lv.record.get("phase")
        blob = RunStore(self.run_dir).load_phase(phase) if phase else None
        if blob is None:
            raise RunDirError(f"{self.run_dir}: level {lv.index} has no trained state (phase {phase}); resume the "
                              "search by running it again")
        model, trained = self._target()
        trained.load_state_dict(blob["model"])
        params = dict(trained.named_parameters())
        with torch.no_grad():
            M.apply_({n: params[n] for n in lv.masks}, lv.masks)
        return model.eval()

    def _target(self) -> tuple[nn.Module, TicketModel]:
        if self._built is None:
            if self.target is None:
                raise RunDirError(f"{self.run_dir}: this result cannot rebuild its model; load a ticket with "
                                  "snnlth.load_ticket after `snnlth export`")
            self._built = self.target()
        return self._built

    def _level(self, index: int) -> Level:
        if not -len(self.levels) <= index < len(self.levels):
            raise ConfigError(f"level {index} does not exist; this search has levels 0..{len(self.levels) - 1}")
        return self.levels[index]


def ticket_search(run_dir: Path, summary: dict[str, Any], status: str, target: Target | None) -> TicketSearch:
    """The :class:`TicketSearch` of a finished run (its masks read from the run directory)."""
    store = RunStore(run_dir)
    levels = []
    for i, lv in enumerate(summary["levels"]):
        masks = store.load_masks(lv["masks"])
        if masks is None:
            raise RunDirError(f"{store.path}: masks {lv['masks']} are missing; delete the run directory to search "
                              "again")
        levels.append(Level(i, lv["round"], lv["sparsity_prunable"], lv["sparsity_all"], lv["timesteps"],
                            lv["test_accuracy"], lv["search_seconds"], lv["final"], masks, lv))
    return TicketSearch(run_dir, summary, status, levels, target)
