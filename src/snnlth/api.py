"""Python API: ``snnlth.train(config)``. The CLI is a thin layer over these functions."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from snnlth.config import SearchRunConfig, TrainRunConfig
from snnlth.config_io import config_to_dict
from snnlth.data.catalog import DATASETS
from snnlth.data.loader import DataBundle, load_data
from snnlth.data.source import DataSource
from snnlth.engine.loop import BatchInfo, FitState, Schedule, fit
from snnlth.engine.optim import load_optimizer_state, make_optimizer, resolve_device
from snnlth.errors import ConfigError, NumericalError
from snnlth.methods.base import Callbacks, SearchContext
from snnlth.methods.registry import method_of
from snnlth.methods.runner import run_search
from snnlth.methods.source import check_source
from snnlth.models.catalog import MODELS, USER_MODEL, create_model
from snnlth.models.protocol import SpikingNet, TicketModel
from snnlth.parallel import from_env, lost_peer, setup
from snnlth.presets import explicit_values
from snnlth.rundir.atomic import sigint_deferred
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


def _merge(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {k: dict(v) for k, v in a.items()}
    for sec, values in b.items():
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


def build_model(cfg: TrainRunConfig, data: DataBundle, device: torch.device) -> SpikingNet:
    """The configured model for ``data``'s image shape, initialised from ``cfg.train.seed``, on ``device``."""
    torch.manual_seed(cfg.train.seed)
    return model_builder(cfg, data)().to(device)


def count_parameters(model: SpikingNet) -> dict[str, int]:
    prunable = set(model.prunable_names())
    params = dict(model.named_parameters())
    n_prunable = sum(p.numel() for n, p in params.items() if n in prunable)
    return {"num_parameters": sum(p.numel() for p in params.values()), "num_prunable": n_prunable}


def train(cfg: TrainRunConfig, out: str | Path | None = None, runs_root: str | Path = "runs",
          on_batch: Callable[[BatchInfo], None] | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data``; resumable: rerunning with the same config and ``out`` continues from the
    last completed epoch. Nothing is written until config, data and model have all been checked."""
    validate_names(cfg)
    if from_env().active:
        raise ConfigError("snnlth train runs in one process; under torchrun, run `snnlth search` (every method "
                          "trains data-parallel), or start `snnlth train` with plain python")
    device = resolve_device(cfg.train.device)
    facts = identity_facts(cfg)
    store = RunStore(Path(out) if out else default_run_dir("train", cfg, runs_root, (), facts), map_location=device)
    identity = Identity.of("train", cfg, (), facts)
    status = store.status(identity)
    if status == "done":
        return TrainResult(store.path, store.read_summary(), "done")
    data = load_data(cfg.data, device, seed=cfg.train.seed)
    named_cfg, cfg = cfg, unseeded(store, cfg)
    model = build_model(cfg, data, device)
    optimizer = make_optimizer(model, cfg.train)
    state = FitState()
    ckpt = store.load_train_checkpoint() if status == "resume" else None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        load_optimizer_state(optimizer, ckpt["optimizer"])
        state = FitState(epoch=ckpt["epoch"], history=list(ckpt["history"]))
    store.open(identity, named_cfg)
    try:
        return _train_in(store, cfg, model, optimizer, data, state, device, status, on_batch, on_epoch)
    finally:
        store.close()


def _train_in(store: RunStore, cfg: TrainRunConfig, model: SpikingNet, optimizer: torch.optim.Optimizer,
              data: DataBundle, state: FitState, device: torch.device, status: str,
              on_batch: Callable[[BatchInfo], None] | None, on_epoch: Callable[[dict], None] | None) -> TrainResult:
    keep_seed(store, cfg)

    def persist(st: FitState) -> None:
        with sigint_deferred():  # checkpoint and metrics rows together, whatever Ctrl-C does
            store.save_train_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                         "epoch": st.epoch, "history": st.history})
            store.write_metrics(st.history)
        if on_epoch is not None:
            on_epoch(st.history[-1])

    schedule = Schedule(cfg.train.epochs, cfg.model.timesteps, eval_every=cfg.train.eval_every)
    try:
        fit(model, optimizer, data, cfg.train, schedule, state, on_batch=on_batch, on_epoch_end=persist)
    except NumericalError as exc:
        kept = f"last good checkpoint {store.checkpoint}, epoch {state.epoch}" if state.epoch else "no checkpoint yet"
        raise NumericalError(f"{exc} ({kept})") from None
    summary = make_summary(cfg, model, state, device)
    store.write_summary(summary)
    return TrainResult(store.path, summary, "resumed" if status == "resume" else "trained", model)


def make_summary(cfg: TrainRunConfig, model: SpikingNet, state: FitState, device: torch.device) -> dict[str, Any]:
    last = state.history[-1]
    return {
        "test_accuracy": last["test_accuracy"],
        "best_test_accuracy": state.best_test_accuracy,
        "epochs": state.epoch,
        "train_seconds": sum(h["train_seconds"] for h in state.history),
        "eval_seconds": sum(h["eval_seconds"] for h in state.history),
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


@dataclass
class SearchResult:
    """``summary`` holds exactly what ``summary.json`` holds (method, levels, search seconds, Early-Time and
    Early-Bird records); ``status`` is ``"searched"``, ``"resumed"`` or ``"done"``."""

    run_dir: Path
    summary: dict[str, Any]
    status: str


def search_run_dir(cfg: SearchRunConfig, runs_root: str | Path = "runs") -> Path:
    """The directory ``search(cfg, runs_root=runs_root)`` runs in (named by the run's content); nothing is read or
    written."""
    spec = method_of(cfg)
    ignored = spec.ignored(cfg)
    return default_run_dir(spec.name, cfg, runs_root, ignored,
                           _merge(identity_facts(cfg), explicit_values(cfg, ignored)))


def search(cfg: SearchRunConfig, out: str | Path | None = None, runs_root: str | Path = "runs",
           callbacks: Callbacks | None = None) -> SearchResult:
    """Run a ticket search (``cfg.search.method``: any registered method, see ``snnlth methods``; Early-Time via
    ``early_time``).

    Resumable: rerunning with the same config and ``out`` continues from the last completed epoch and skips every
    finished round. Nothing is written until config, ``--from`` source, data and model have been checked.
    """
    validate_names(cfg)
    spec = method_of(cfg)
    spec.validate(cfg)
    source = check_source(cfg, spec)
    device = resolve_device(cfg.train.device)
    ignored = spec.ignored(cfg)
    facts = _merge(identity_facts(cfg), explicit_values(cfg, ignored))
    path = Path(out) if out else search_run_dir(cfg, runs_root)

    def prepare() -> tuple[DataSource, Callable[[], TicketModel], Callable[[], TicketModel]]:
        data = load_data(cfg.data, device, seed=cfg.train.seed)
        twin = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, neuron="relu"))
        return data, model_builder(cfg, data), model_builder(twin, data)

    return run_search_in(path, cfg, source, device, prepare, ignored=ignored, facts=facts, callbacks=callbacks)


def run_search_in(path: Path, cfg: SearchRunConfig, source: RunStore | None, device: torch.device,
                  prepare: Callable[[], tuple], *, ignored: tuple[str, ...],
                  facts: dict, callbacks: Callbacks | None = None) -> SearchResult:
    """The search of ``cfg`` in run directory ``path``: resumed if started, returned as is if finished, else run on
    the data source, model builder (and ANN-twin builder, if any) ``prepare()`` gives (called only when there is
    work to do)."""
    spec = method_of(cfg)
    dist, device = setup(device)
    dist.check_batch(cfg.train.batch_size)
    store = ranked(RunStore(path, map_location=device), dist, device)
    identity = Identity.of("search", cfg, ignored, facts)
    status = store.status(identity)
    if status == "done":
        return SearchResult(store.path, store.read_summary(), "done")
    data, build, *twin = prepare()
    if spec.needs_twin and not twin:
        raise ConfigError(f"--method {spec.name} trains the ANN twin of the model, which only snnlth's own "
                          "architectures have; use one of them (`snnlth search --model ...`)")
    named_cfg, cfg = cfg, dist.broadcast(unseeded(store, cfg))  # an official run's drawn seed: rank 0's
    callbacks = callbacks if dist.is_main else None  # progress on rank 0 only
    ctx = SearchContext(cfg, store, data, device, build, callbacks or Callbacks(), twin=twin[0] if twin else None,
                        dist=dist)
    ctx.prunable_names(ctx.shape_model())  # fail on a model/data mismatch or a bad --exclude before writing
    store.open(identity, named_cfg, label=spec.label_of(cfg), base_label=spec.label,
               model_identity=ctx.shape_model().identity())
    try:
        keep_seed(store, cfg)
        summary = run_search(ctx, source)
        store.write_summary(summary)
    except RuntimeError as exc:
        lost = lost_peer(exc, dist)
        if lost is None:
            raise
        raise lost from None
    finally:
        store.close()
    return SearchResult(store.path, summary, "resumed" if status == "resume" else "searched")
