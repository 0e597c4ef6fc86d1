"""Python API: ``snnlth.train(config)`` and ``snnlth.search(config)``; ``snnlth.find_ticket`` (a user's network)
builds a :class:`SearchRequest` and runs the same :func:`run_search`. The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from snnlth.config import SearchRunConfig, TrainRunConfig
from snnlth.config_io import config_to_dict
from snnlth.data.catalog import DATASETS
from snnlth.data.loader import DataBundle, load_data
from snnlth.data.source import DataSource
from snnlth.engine.loop import BatchInfo
from snnlth.engine.optim import resolve_device
from snnlth.engine.recipe import Recipe, check_recipe, with_recipe
from snnlth.errors import ConfigError, NumericalError
from snnlth.methods.kit import MethodKit
from snnlth.methods.phases import Callbacks, Phase, PhaseTrainer, RunParts
from snnlth.methods.registry import method_of
from snnlth.methods.runner import run_method
from snnlth.methods.source import check_source
from snnlth.models.catalog import MODELS, USER_MODEL, create_model
from snnlth.models.protocol import SpikingNet, TicketModel
from snnlth.parallel import Dist, from_env, lost_peer, setup, teardown
from snnlth.presets import explicit_values
from snnlth.result import Target, TicketSearch, ticket_search
from snnlth.rundir.layout import Identity, default_run_dir
from snnlth.rundir.ranked import ranked
from snnlth.rundir.store import RunStore
from snnlth.snn.surrogate import SURROGATES


@dataclass
class TrainResult:
    """``summary`` holds exactly what ``summary.json`` holds; ``status`` says whether this call trained
    (``"trained"``/``"resumed"``) or found the run already finished (``"done"``)."""

    run_dir: Path
    summary: dict[str, Any]
    status: str
    model: SpikingNet | None = None


def validate_names(cfg: TrainRunConfig | SearchRunConfig) -> None:
    """Registry names are checked before anything is loaded or written."""
    if cfg.model.model.startswith(USER_MODEL):
        raise ConfigError(f"this run searched a Python model ({cfg.model.model[len(USER_MODEL):]}) with "
                          "snnlth.find_ticket; resume it from Python: call find_ticket again with the same model, "
                          "data and out")
    DATASETS.get(cfg.data.dataset)
    MODELS.get(cfg.model.model)
    SURROGATES.get(cfg.model.surrogate)


def identity_facts(cfg: TrainRunConfig | SearchRunConfig) -> dict[str, dict[str, Any]]:
    """What changes results without a config field: Cutout moved before normalisation in 0.2 (the hole is black),
    so augmented runs of datasets with Cutout get names of their own instead of resuming older runs."""
    if cfg.data.augment and DATASETS.get(cfg.data.dataset).cutout > 0:
        return {"data": {"cutout": "before-normalisation"}}
    return {}


def _merge(*parts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for part in parts:
        for sec, values in part.items():
            out.setdefault(sec, {}).update(values)
    return out


OFFICIAL_SEED = "official_seed"


def unseeded(store: RunStore, cfg):
    """``--quirks official`` sets no seed, as the official code: init, data order and augmentation come from a seed
    drawn at random when the run starts (kept in the run, so a resumed run goes on with it; the subset selection
    keeps ``--seed``). Other runs are returned as they are."""
    if cfg.train.quirks != "official":
        return cfg
    seed = store.record(OFFICIAL_SEED, dict)["seed"] if store.has_record(OFFICIAL_SEED) else \
        secrets.randbelow(2**31 - 1)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))


def keep_seed(store: RunStore, cfg) -> None:
    """Store the drawn seed of an unseeded run (after the run's header: a directory never holds only this)."""
    if cfg.train.quirks == "official":
        store.record(OFFICIAL_SEED, lambda: {"seed": cfg.train.seed})


def model_builder(cfg: TrainRunConfig | SearchRunConfig, data: DataBundle) -> Callable[[], SpikingNet]:
    """A builder of the configured model for ``data``'s image shape (on the CPU, initialised from the global RNG)."""
    spec = data.spec
    return lambda: create_model(cfg.model, spec.in_channels, data.image_size, spec.num_classes)


def count_parameters(model: SpikingNet) -> dict[str, int]:
    prunable = set(model.prunable_names())
    params = dict(model.named_parameters())
    n_prunable = sum(p.numel() for n, p in params.items() if n in prunable)
    return {"num_parameters": sum(p.numel() for p in params.values()), "num_prunable": n_prunable}


def _load(cfg: TrainRunConfig | SearchRunConfig, device: torch.device) -> DataBundle:
    return load_data(cfg.data, device, seed=cfg.train.seed, data_dir=cfg.runtime.data_dir,
                     cache_dir=cfg.runtime.cache_dir)


# ---- train: a one-phase run --------------------------------------------------------------------------------------
TRAIN_PHASE = "train"


def train(cfg: TrainRunConfig, out: str | Path | None = None, runs_root: str | Path = "runs",
          on_batch: Callable[[BatchInfo], None] | None = None,
          on_epoch: Callable[[dict], None] | None = None, **recipe: Any) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data``: one phase of the phase trainer every search uses, so the resume
    convention is the same (rerunning with the same config and ``out`` continues from the last completed epoch).
    Nothing is written until config, data and model have all been checked. ``recipe``: ``optimizer=``, ``loss=``
    and ``recipe_name=`` as for :func:`search`."""
    train_cfg, callables = with_recipe(cfg.train, **recipe)
    cfg = dataclasses.replace(cfg, train=train_cfg)
    validate_names(cfg)
    check_recipe(cfg.train, callables)
    if from_env().active:
        raise ConfigError("snnlth train runs in one process; under torchrun, run `snnlth search` (every method "
                          "trains data-parallel), or start `snnlth train` with plain python")
    device = resolve_device(cfg.runtime.device)
    facts = identity_facts(cfg)
    store = RunStore(Path(out) if out else default_run_dir("train", cfg, runs_root, (), facts), map_location=device)
    identity = Identity.of("train", cfg, (), facts)
    status = store.status(identity)
    if status == "done":
        return TrainResult(store.path, store.read_summary(), "done")
    data = _load(cfg, device)
    named_cfg, cfg = cfg, unseeded(store, cfg)
    torch.manual_seed(cfg.train.seed)
    model = model_builder(cfg, data)().to(device)
    callbacks = Callbacks((lambda info, _label: on_batch(info)) if on_batch else None, on_epoch)
    trainer = PhaseTrainer(store, RunParts(cfg.train, cfg.runtime, data, device, callbacks=callbacks,
                                           recipe=callables))
    store.open(identity, named_cfg)
    try:
        keep_seed(store, cfg)
        _legacy_checkpoint(store)
        phase = Phase(TRAIN_PHASE, model.state_dict(), None, cfg.model.timesteps, cfg.train.epochs, stream=0,
                      guard=True)
        try:
            history = trainer.train(model, phase).history
        except NumericalError as exc:
            raise NumericalError(str(exc).replace(f"phase {TRAIN_PHASE}: ", "", 1)) from None
        summary = make_summary(cfg, model, history, device)
        store.write_summary(summary)
    finally:
        store.close()
    return TrainResult(store.path, summary, "resumed" if status == "resume" else "trained", model)


def _legacy_checkpoint(store: RunStore) -> None:
    """A train run begun before 0.4 kept its checkpoint in ``checkpoint.pt``: it becomes the phase's."""
    if store.checkpoint.exists() and not store.phase_checkpoint(TRAIN_PHASE).exists():
        blob = store.load_train_checkpoint()
        if blob is not None:
            store.save_checkpoint(TRAIN_PHASE, {**blob, "extra": []})
        store.checkpoint.unlink()


def make_summary(cfg: TrainRunConfig, model: SpikingNet, history: list[dict], device: torch.device) -> dict:
    last = history[-1]
    accs = [h["test_accuracy"] for h in history if h.get("test_accuracy") is not None]
    return {
        "test_accuracy": last["test_accuracy"],
        "best_test_accuracy": max(accs) if accs else None,
        "epochs": len(history),
        "train_seconds": sum(h["train_seconds"] for h in history),
        "eval_seconds": sum(h["eval_seconds"] for h in history),
        "images_per_second": last["images_per_second"],
        "timesteps": cfg.model.timesteps,
        "model": cfg.model.model,
        "neuron": cfg.model.neuron,
        "dataset": cfg.data.dataset,
        "seed": cfg.train.seed,
        "device": str(device),
        **count_parameters(model),
        "config": config_to_dict(cfg),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---- search: one path for snnlth.search and snnlth.find_ticket ---------------------------------------------------
@dataclass(frozen=True)
class Prepared:
    """What a search trains on, made only when there is work to do: the data, a builder of fresh models (on the
    CPU, initialised from the global RNG) and, for snnlth's own architectures, of the ANN twin."""

    data: DataSource
    build: Callable[[], TicketModel]
    twin: Callable[[], TicketModel] | None = None


@dataclass(frozen=True)
class SearchRequest:
    """A search before anything is written: its config; ``out`` (None: a directory named by the run's content
    under ``runs_root``); ``prepare(device)``; ``ignored`` fields and identity ``facts`` of its own (a user's
    network and data); ``check_source``, more checks of a ``--from`` run; progress ``callbacks``; ``target``, what
    :meth:`TicketSearch.apply` puts a ticket into; ``recipe``, the callables a config's ``python:`` names stand for."""

    cfg: SearchRunConfig
    prepare: Callable[[torch.device], Prepared]
    out: Path | None = None
    runs_root: Path = Path("runs")
    ignored: tuple[str, ...] = ()
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    check_source: Callable[[RunStore], None] | None = None
    callbacks: Callbacks | None = None
    target: Target | None = None
    recipe: Recipe = field(default_factory=Recipe)


def identity_of(cfg: SearchRunConfig, ignored: tuple[str, ...] = (), facts: dict | None = None
                ) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """The fields a search of ``cfg`` leaves out of its identity (its method's unread ones and ``ignored``) and the
    facts it adds (the data pipeline's, a preset's explicit values, ``facts``)."""
    left_out = (*method_of(cfg).ignored(cfg), *ignored)
    return left_out, _merge(identity_facts(cfg), explicit_values(cfg, left_out), facts or {})


def search_run_dir(cfg: SearchRunConfig, runs_root: str | Path = "runs") -> Path:
    """The directory ``search(cfg, runs_root=runs_root)`` runs in (named by the run's content); nothing is read or
    written."""
    ignored, facts = identity_of(cfg)
    return default_run_dir(method_of(cfg).name, cfg, runs_root, ignored, facts)


def search(cfg: SearchRunConfig, out: str | Path | None = None, runs_root: str | Path = "runs",
           callbacks: Callbacks | None = None, **recipe: Any) -> TicketSearch:
    """Run a ticket search (``cfg.search.method``: any registered method, see ``snnlth methods``; Early-Time via
    ``early_time``, round stop via ``round_stop``) of one of snnlth's models; ``apply()`` of the result gives that
    model with a ticket in it.

    Resumable: rerunning with the same config and ``out`` continues from the last completed epoch and skips every
    finished round. Nothing is written until config, ``--from`` source, data and model have been checked.

    ``recipe``: ``optimizer=`` (a name, or a callable ``params -> torch.optim.Optimizer``), ``loss=`` (a name, or a
    callable ``(out_seq [T, B, C], y) -> scalar``) and ``recipe_name=`` (names the callables in the run's identity
    instead of their qualified name and source hash).
    """
    train_cfg, callables = with_recipe(cfg.train, **recipe)
    cfg = dataclasses.replace(cfg, train=train_cfg)
    validate_names(cfg)

    def prepare(device: torch.device) -> Prepared:
        data = _load(cfg, device)
        twin = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, neuron="relu"))
        return Prepared(data, model_builder(cfg, data), model_builder(twin, data))

    return run_search(SearchRequest(cfg, prepare, Path(out) if out else None, Path(runs_root), callbacks=callbacks,
                                    target=lambda: _snnlth_model(cfg), recipe=callables))


def _snnlth_model(cfg: SearchRunConfig) -> tuple[SpikingNet, SpikingNet]:
    """A fresh model of the run's architecture for its dataset's image shape (on the CPU), to put a ticket in."""
    spec = DATASETS.get(cfg.data.dataset)
    model = create_model(cfg.model, spec.in_channels, cfg.data.resize or spec.image_size, spec.num_classes)
    return model, model


def run_search(req: SearchRequest) -> TicketSearch:
    """The search of ``req``: checked (method, ``--from`` source, device), then resumed if started, returned as is
    if finished, else run."""
    cfg = req.cfg
    check_recipe(cfg.train, req.recipe)
    spec = method_of(cfg)
    spec.validate(cfg)
    source = check_source(cfg, spec)
    if source is not None and req.check_source is not None:
        req.check_source(source)
    device = resolve_device(cfg.runtime.device)
    ignored, facts = identity_of(cfg, req.ignored, req.facts)
    path = req.out or default_run_dir(spec.name, cfg, req.runs_root, ignored, facts)
    dist, device = setup(device)
    dist.check_batch(cfg.train.batch_size)
    store = ranked(RunStore(path, map_location=device), dist, device)
    identity = Identity.of("search", cfg, ignored, facts)
    status = store.status(identity)
    if status == "done":
        summary = store.read_summary()
    else:
        summary = _search_in(store, (identity, status), req, source, (dist, device))
    teardown(dist)  # only after a run every rank finished: a failed rank's peers stop by their own errors
    return _result(store.path, summary, {"done": "done", "resume": "resumed"}.get(status, "searched"), req.target, dist)


def _search_in(store: RunStore, run: tuple[Identity, str], req: SearchRequest, source: RunStore | None,
               where: tuple[Dist, torch.device]) -> dict:
    """Run the method of ``req.cfg`` in ``store`` (``run``: the identity and status found there) and write the
    summary; returns it."""
    (identity, _status), (dist, device) = run, where
    spec = method_of(req.cfg)
    prepared = req.prepare(device)
    if spec.needs_twin and prepared.twin is None:
        raise ConfigError(f"--method {spec.name} trains the ANN twin of the model, which only snnlth's own "
                          "architectures have; use one of them (`snnlth search --model ...`)")
    named_cfg, cfg = req.cfg, dist.broadcast(unseeded(store, req.cfg))  # an official run's drawn seed: rank 0's
    callbacks = (req.callbacks if dist.is_main else None) or Callbacks()  # progress on rank 0 only
    trainer = PhaseTrainer(store, RunParts(cfg.train, cfg.runtime, prepared.data, device, dist, callbacks, req.recipe))
    kit = MethodKit(cfg, trainer, prepared.build, prepared.twin)  # a model/data mismatch or bad --exclude fails here
    store.open(identity, named_cfg, label=spec.label_of(cfg), base_label=spec.label, model_identity=kit.identity)
    try:
        keep_seed(store, cfg)
        summary = run_method(kit, source)
        store.write_summary(summary)
    except RuntimeError as exc:
        lost = lost_peer(exc, dist)
        if lost is None:
            raise
        raise lost from None
    finally:
        store.close()
    return summary


def _result(path: Path, summary: dict, status: str, target: Target | None, dist: Dist) -> TicketSearch:
    """The result on rank 0; on other ranks of a data-parallel search (which may not see the run directory) the
    summary alone, with no levels."""
    if not dist.is_main:
        return TicketSearch(path, summary, status, [], target)
    return ticket_search(path, summary, status, target)
