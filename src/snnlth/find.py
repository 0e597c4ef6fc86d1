"""``snnlth.find_ticket``: a ticket search on a user's own network and data, written to a normal run directory.

The network is adapted (:mod:`snnlth.adapters`), never edited: the search trains copies of it and the user's model
keeps its weights until :meth:`TicketSearch.apply` puts a ticket into it. A run's identity holds the network's
architecture and initial weights and a fingerprint of the data, so rerunning the same call resumes (or returns)
that run and any other call gets a run directory of its own.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from snnlth import masks as M
from snnlth.adapters import Adapter, wrap
from snnlth.adapters.checks import check_model
from snnlth.api import SearchResult, run_search_in
from snnlth.config import SearchConfig, SearchRunConfig, TrainConfig
from snnlth.config_io import config_from_dict
from snnlth.data.user import UserData, fingerprint, first_input, hash_tensor, is_tensor_pair, make_source
from snnlth.engine.optim import resolve_device
from snnlth.errors import ConfigError, DataError, RunDirError
from snnlth.methods.base import Callbacks
from snnlth.methods.registry import method_of
from snnlth.methods.source import check_source
from snnlth.models.catalog import USER_MODEL
from snnlth.models.protocol import TicketModel
from snnlth.progress import Progress
from snnlth.registry import unknown_name_message
from snnlth.rundir.layout import default_run_dir
from snnlth.rundir.store import RunStore

# config fields that mean nothing for a user's network and data (its neurons and pipeline are its own)
NOT_APPLICABLE = ("model.neuron", "model.tau", "model.v_threshold", "model.surrogate", "model.alpha",
                  "model.bn_time", "data.augment", "data.resize", "data.train_subset", "data.test_subset")
_EXPLICIT = ("method", "epochs", "rounds", "prune_rate", "timesteps", "early_time", "rewind_epoch", "device")
_PROBE_BATCH = 4


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
    """The result of :func:`find_ticket`: ``levels`` (every ticket, densest first), ``run_dir`` (a normal run
    directory: ``snnlth report`` / ``snnlth export`` work on it), ``summary`` (``summary.json``), ``status``
    (``searched``, ``resumed`` or ``done``), and :meth:`apply`."""

    run_dir: Path
    summary: dict[str, Any]
    status: str
    levels: list[Level]
    model: nn.Module = field(repr=False)
    adapted: TicketModel = field(repr=False)

    @property
    def best(self) -> Level:
        """The sparsest final ticket (the one :meth:`apply` puts in by default)."""
        finals = [lv for lv in self.levels if lv.final] or self.levels
        return max(finals, key=lambda lv: lv.sparsity)

    def apply(self, level: int | Level | None = None) -> nn.Module:
        """Put a trained ticket into the user's model: its trained weights (and BatchNorm statistics), pruned
        weights exactly 0. ``level``: an index into ``levels``, a :class:`Level`, or None for :attr:`best`.
        Returns the user's model (in eval mode; it keeps its device)."""
        lv = self.best if level is None else level if isinstance(level, Level) else self._level(level)
        phase = lv.record.get("phase")
        blob = RunStore(self.run_dir).load_phase(phase) if phase else None
        if blob is None:
            raise RunDirError(f"{self.run_dir}: level {lv.index} has no trained state (phase {phase}); resume the "
                              "search by calling find_ticket again")
        self.adapted.load_state_dict(blob["model"])
        params = dict(self.adapted.named_parameters())
        with torch.no_grad():
            M.apply_({n: params[n] for n in lv.masks}, lv.masks)
        return self.model.eval()

    def _level(self, index: int) -> Level:
        if not -len(self.levels) <= index < len(self.levels):
            raise ConfigError(f"level {index} does not exist; this search has levels 0..{len(self.levels) - 1}")
        return self.levels[index]


def find_ticket(model: nn.Module, train: UserData, test: UserData, *, method: str = "imp", epochs: int,
                rounds: int = 4, prune_rate: float = 0.25, timesteps: int | None = None, early_time: str | int = "off",
                rewind_epoch: int = 0, out: str | Path | None = None, device: str = "auto", progress: bool = True,
                runs_root: str | Path = "runs", **train_options: Any) -> TicketSearch:
    """Find lottery tickets of ``model`` (a spikingjelly, snntorch or PyTorch network, an adapter of
    :mod:`snnlth.adapters`, or an snnlth model) on ``train``, evaluated on ``test``.

    ``train`` / ``test``: ``(x, y)`` tensors, a ``Dataset`` of ``(x, y)`` items, or a ``DataLoader`` (its dataset,
    ``collate_fn`` and workers are used; batch size and order are the search's). ``method``: any of
    ``snnlth methods`` (``imp``, ``eb``, ``random``, ``reinit``; the baselines take ``from_run=``, a run directory
    or a :class:`TicketSearch`). ``timesteps``: T of the final model (None: the adapter's). ``early_time``: ``"off"``,
    ``"auto"`` or the search T. ``train_options``: any other field of :class:`~snnlth.config.TrainConfig` or
    :class:`~snnlth.config.SearchConfig` (``lr``, ``batch_size``, ``seed``, ``scope``, ``exclude``, ``amp``,
    ``round_stop="mask"``...).

    Writes ``out`` (default ``runs/<method>-user-<Class>-user-T<T>-<hash>/seed_<seed>``); calling it again with the
    same arguments resumes an interrupted search or returns the finished one. ``model`` is not changed:
    ``result.apply()`` puts the sparsest final ticket into it. Bad input raises a one-line :class:`ConfigError` or
    :class:`DataError` (both ``ValueError``-like) before anything is written.
    """
    adapted = wrap(model, timesteps)
    t = timesteps if timesteps is not None else getattr(adapted, "timesteps", None)
    if t is None:
        raise ConfigError("timesteps is not known: pass find_ticket(..., timesteps=T) or give it to the adapter")
    net = getattr(adapted, "net", adapted)
    cfg = user_config(type(net).__name__, t, method=method, epochs=epochs, rounds=rounds, prune_rate=prune_rate,
                      early_time=early_time, rewind_epoch=rewind_epoch, device=device, options=train_options)
    spec = method_of(cfg)
    spec.validate(cfg)
    source = check_source(cfg, spec)
    dev = resolve_device(cfg.train.device)

    template = copy.deepcopy(adapted).cpu()  # the initial weights, on the CPU; the user's model is never trained
    probe = _probe_batch(train, test)
    num_classes = check_model(template, probe.to(dev), t, device=dev)
    data = make_source(train, test, dev, num_classes)
    settings = template.settings() if isinstance(template, Adapter) else {"structure": structure_digest(template)}
    facts = {"model": {"network": template.identity(), "init": state_digest(template), "adapter": settings},
             "data": fingerprint(train, test)}
    if source is not None:
        _check_same_network(source, facts)
    ignored = (*spec.ignored(cfg), *NOT_APPLICABLE)
    path = Path(out) if out else default_run_dir(spec.name, cfg, runs_root, ignored, facts)
    bars = Progress(enabled=progress)
    try:
        result = run_search_in(path, cfg, source, dev, lambda: (data, lambda: copy.deepcopy(template)),
                               ignored=ignored, facts=facts,
                               callbacks=Callbacks(bars.on_batch, bars.on_epoch, bars.on_event) if progress else None)
    finally:
        bars.close()
    return _result(result, model, adapted)


def user_config(name: str, timesteps: int, *, method: str, epochs: int, rounds: int, prune_rate: float,
                early_time: str | int, rewind_epoch: int, device: str, options: dict[str, Any]) -> SearchRunConfig:
    """The run config of a search of a user's network ``name``: the explicit arguments plus ``options`` routed to
    the ``[train]`` or ``[search]`` field of the same name (an unknown name is an error with a suggestion)."""
    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    search_fields = {f.name: f for f in dataclasses.fields(SearchConfig)}
    known = [n for n in (*train_fields, *search_fields) if n not in _EXPLICIT]
    raw: dict[str, dict[str, Any]] = {
        "data": {"dataset": "user", "augment": False},
        "model": {"model": f"{USER_MODEL}{name}", "timesteps": timesteps},
        "train": {"epochs": epochs, "device": device},
        "search": {"method": method, "rounds": rounds, "prune_rate": prune_rate, "early_time": str(early_time),
                   "rewind_epoch": rewind_epoch}}
    for key, value in options.items():
        if key not in known:
            raise ConfigError(unknown_name_message("find_ticket option", key, known))
        if value is None:
            continue  # None: the default
        if key == "from_run" and isinstance(value, TicketSearch):
            value = value.run_dir
        section, fields = ("train", train_fields) if key in train_fields else ("search", search_fields)
        if isinstance(value, Path):
            value = str(value)
        if "tuple" in str(fields[key].type) and not isinstance(value, (list, tuple)):
            value = (value,)  # exclude="fc2" means ("fc2",)
        raw[section][key] = value
    return config_from_dict(SearchRunConfig, raw)


def structure_digest(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a model's ``repr``: its layers with their settings (neuron constants too)."""
    return hashlib.sha256(repr(model).encode()).hexdigest()[:16]


def state_digest(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a model's state: names, shapes, dtypes and values."""
    digest = hashlib.sha256()
    for name, t in model.state_dict().items():
        hash_tensor(digest, f"{name}{tuple(t.shape)}{t.dtype}", t)
    return digest.hexdigest()[:16]


def _probe_batch(train: UserData, test: UserData) -> torch.Tensor:
    """A few training inputs to run the model on, after checking that train and test inputs have one shape."""
    x_train, x_test = first_input("train", train), first_input("test", test)
    if x_train.shape != x_test.shape:
        raise DataError(f"train inputs have shape {tuple(x_train.shape)} but test inputs {tuple(x_test.shape)}; give "
                        "both splits the same input shape")
    if is_tensor_pair(train):
        return train[0][:_PROBE_BATCH].float()
    dataset = train.dataset if isinstance(train, DataLoader) else train
    n = min(len(dataset), _PROBE_BATCH)
    try:
        return torch.stack([torch.as_tensor(dataset[i][0]) for i in range(n)]).float()
    except RuntimeError:
        raise DataError("train items have inputs of different shapes; give inputs of one shape (resize or crop them "
                        "in the dataset)") from None


def _check_same_network(source: RunStore, facts: dict) -> None:
    """A baseline's ``from_run`` must have searched this architecture on this data."""
    theirs = source.read_config().get("semantic", {})
    if theirs.get("model", {}).get("network", {}).get("parameters") != facts["model"]["network"]["parameters"]:
        raise ConfigError(f"from_run {source.path} searched another architecture; pass the same network (parameter "
                          "names and shapes) as that search")
    if theirs.get("data", {}).get("train") != facts["data"]["train"] or \
            theirs.get("data", {}).get("test") != facts["data"]["test"]:
        raise ConfigError(f"from_run {source.path} searched other data; pass the same train and test data as that "
                          "search")


def _result(result: SearchResult, model: nn.Module, adapted: TicketModel) -> TicketSearch:
    store = RunStore(result.run_dir)
    levels = []
    for i, lv in enumerate(result.summary["levels"]):
        masks = store.load_masks(lv["masks"])
        if masks is None:
            raise RunDirError(f"{store.path}: masks {lv['masks']} are missing; delete the run directory to search "
                              "again")
        levels.append(Level(i, lv["round"], lv["sparsity_prunable"], lv["sparsity_all"], lv["timesteps"],
                            lv["test_accuracy"], lv["search_seconds"], lv["final"], masks, lv))
    return TicketSearch(result.run_dir, result.summary, result.status, levels, model, adapted)
