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
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from snnlth.adapters import Adapter, wrap
from snnlth.adapters.checks import check_model
from snnlth.api import Prepared, SearchRequest, run_search
from snnlth.config import RuntimeConfig, SearchConfig, SearchRunConfig, TrainConfig
from snnlth.config_io import config_from_dict
from snnlth.data.user import UserData, fingerprint, first_input, hash_tensor, is_tensor_pair, make_source
from snnlth.engine.optim import resolve_device
from snnlth.engine.recipe import with_recipe
from snnlth.errors import ConfigError, DataError, NotLearningError
from snnlth.methods.phases import Callbacks
from snnlth.models.catalog import USER_MODEL
from snnlth.progress import Progress
from snnlth.registry import unknown_name_message
from snnlth.result import Level, TicketSearch
from snnlth.rundir.store import RunStore

# config fields that mean nothing for a user's network and data (its neurons and pipeline are its own)
NOT_APPLICABLE = ("model.neuron", "model.tau", "model.v_threshold", "model.surrogate", "model.alpha",
                  "model.bn_time", "data.augment", "data.resize", "data.train_subset", "data.test_subset")
_PROBE_BATCH = 4
_SECTIONS = (("train", TrainConfig), ("search", SearchConfig), ("runtime", RuntimeConfig))

__all__ = ["Level", "TicketSearch", "find_ticket"]


def find_ticket(model: nn.Module, train: UserData, test: UserData, *, timesteps: int | None = None,
                out: str | Path | None = None, progress: bool = True, runs_root: str | Path = "runs",
                **options: Any) -> TicketSearch:
    """Find lottery tickets of ``model`` (a spikingjelly, snntorch or PyTorch network, an adapter of
    :mod:`snnlth.adapters`, or an snnlth model) on ``train``, evaluated on ``test``.

    ``train`` / ``test``: ``(x, y)`` tensors, a ``Dataset`` of ``(x, y)`` items, or a ``DataLoader`` (its dataset,
    ``collate_fn`` and workers are used; batch size and order are the search's). ``timesteps``: T of the final model
    (None: the adapter's). ``options``: any field of :class:`~snnlth.config.TrainConfig`,
    :class:`~snnlth.config.SearchConfig` or :class:`~snnlth.config.RuntimeConfig` by name: ``epochs`` (required),
    ``method`` (any of ``snnlth methods``: ``imp``, ``eb``, ``random``, ``reinit``...; the baselines take
    ``from_run=``, a run directory or a :class:`TicketSearch`), ``rounds``, ``prune_rate``, ``early_time``
    (``"off"``, ``"auto"`` or the search T), ``rewind_epoch``, ``lr``, ``batch_size``, ``seed``, ``scope``,
    ``exclude``, ``amp``, ``round_stop="mask"``, ``device``...; the recipe: ``optimizer`` (``"sgd"``, ``"adam"``,
    ``"adamw"`` or a callable ``params -> torch.optim.Optimizer``), ``lr``, ``betas``, ``schedule``,
    ``warmup_epochs``, ``loss`` (``"ce"``, ``"ce-rate"``, ``"mse-rate"`` or a callable ``(out_seq [T, B, C], y) ->
    scalar``), ``recipe_name`` (names the callables in the run's identity); ``allow_chance=True`` goes on with a
    network that does not learn (else :class:`~snnlth.errors.NotLearningError`).

    Writes ``out`` (default ``runs/<method>-user-<Class>-user-T<T>-<hash>/seed_<seed>``); calling it again with the
    same arguments resumes an interrupted search or returns the finished one. ``model`` is not changed:
    ``result.apply()`` puts the sparsest final ticket into it. Bad input raises a one-line :class:`ConfigError` or
    :class:`DataError` (both ``ValueError``-like) before anything is written.
    """
    adapted = wrap(model, timesteps)
    t = timesteps if timesteps is not None else getattr(adapted, "timesteps", None)
    if t is None:
        raise ConfigError("timesteps is not known: pass find_ticket(..., timesteps=T) or give it to the adapter")
    if "epochs" not in options:
        raise ConfigError("find_ticket needs epochs=N: the training epochs of the dense round (and of every round)")
    net = getattr(adapted, "net", adapted)
    callables = {k: options.pop(k) for k in ("optimizer", "loss") if callable(options.get(k))}
    recipe_name = options.pop("recipe_name", None)
    cfg = user_config(type(net).__name__, t, options)
    train_cfg, recipe = with_recipe(cfg.train, recipe_name=recipe_name, **callables)
    cfg = dataclasses.replace(cfg, train=train_cfg)
    dev = resolve_device(cfg.runtime.device)
    template = copy.deepcopy(adapted).cpu()  # the initial weights, on the CPU; the user's model is never trained
    num_classes = check_model(template, _probe_batch(train, test).to(dev), t, device=dev)
    settings = template.settings() if isinstance(template, Adapter) else {"structure": structure_digest(template)}
    facts = {"model": {"network": template.identity(), "init": state_digest(template), "adapter": settings},
             "data": fingerprint(train, test)}
    bars = Progress(enabled=progress)
    request = SearchRequest(
        cfg, lambda device: Prepared(make_source(train, test, device, num_classes), lambda: copy.deepcopy(template)),
        Path(out) if out else None, Path(runs_root), NOT_APPLICABLE, facts,
        check_source=lambda source: _check_same_network(source, facts),
        callbacks=Callbacks(bars.on_batch, bars.on_epoch, bars.on_event) if progress else None,
        target=lambda: (model, adapted), recipe=recipe)
    try:
        return run_search(request)
    except NotLearningError as exc:
        raise NotLearningError(as_keywords(str(exc))) from None
    finally:
        bars.close()


def as_keywords(message: str) -> str:
    """A message's flags as find_ticket keywords: ``--optimizer adam --lr 1e-3`` -> ``optimizer='adam', lr=1e-3``,
    ``--allow-chance`` -> ``allow_chance=True``; a flag in parentheses that names no find_ticket keyword (a model
    flag, such as ``--v-threshold``: a user's network has its own neurons) is left out."""
    fields = {f.name: f for _, cls in _SECTIONS for f in dataclasses.fields(cls)}

    def keyword(match: re.Match) -> str:
        f = fields.get(match.group(1).replace("-", "_"))
        if f is None:
            return match.group(0)
        if "bool" in str(f.type):
            return f"{f.name}=True" + (f" {match.group(2)}" if match.group(2) else "")
        if match.group(2) is None:
            return f.name
        value = match.group(2)
        return f"{f.name}={value}" if re.fullmatch(r"[0-9.e+-]+", value) else f"{f.name}={value!r}"

    unknown = lambda m: "" if m.group(1).replace("-", "_") not in fields else m.group(0)  # noqa: E731
    message = re.sub(r" \(--([a-z][a-z-]*)\)", unknown, message)
    message = re.sub(r"--([a-z][a-z-]*)(?: ([a-z0-9][\w.+-]*))?", keyword, message)
    return re.sub(r"(\w+=\S+) (?=\w+=)", r"\1, ", message)


def user_config(name: str, timesteps: int, options: dict[str, Any]) -> SearchRunConfig:
    """The run config of a search of a user's network ``name``: ``options`` routed to the ``[train]``, ``[search]``
    or ``[runtime]`` field of the same name (an unknown name is an error with a suggestion)."""
    fields = {f.name: (section, f) for section, cls in _SECTIONS for f in dataclasses.fields(cls)}
    raw: dict[str, dict[str, Any]] = {"data": {"dataset": "user", "augment": False},
                                      "model": {"model": f"{USER_MODEL}{name}", "timesteps": timesteps},
                                      "train": {}, "search": {}, "runtime": {}}
    for key, value in options.items():
        if key not in fields or key == "preset":
            raise ConfigError(unknown_name_message("find_ticket option", key, [k for k in fields if k != "preset"]))
        if value is None:
            continue  # None: the default
        section, f = fields[key]
        raw[section][key] = _option_value(value, f)
    return config_from_dict(SearchRunConfig, raw)


def _option_value(value: Any, f: dataclasses.Field) -> Any:
    """A keyword's value as its config field takes it: a TicketSearch or Path as a path string, a scalar as a list
    for list fields (``exclude="fc2"`` means ``("fc2",)``), a number as a string for string fields."""
    if isinstance(value, TicketSearch):
        value = value.run_dir
    if isinstance(value, Path):
        value = str(value)
    if "tuple" in str(f.type) and not isinstance(value, (list, tuple)):
        value = (value,)
    return value


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
