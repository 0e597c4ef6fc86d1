"""What every search strategy shares: the run context, resumable training phases, masks on disk, level records.

A *phase* is one call of the training loop (a round, a warm-up, a retraining) with a name. It is gated by its
artifact: a finished phase is loaded, not retrained; an interrupted one resumes from its last checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from snnlth import masks as M
from snnlth.config import SearchRunConfig
from snnlth.data.loader import DataBundle
from snnlth.engine.loop import BatchInfo, FitState, fit
from snnlth.engine.masking import MaskEnforcer
from snnlth.engine.optim import make_optimizer
from snnlth.errors import ConfigError
from snnlth.models.catalog import create_model
from snnlth.models.protocol import SpikingNet
from snnlth.rundir.atomic import atomic_write_json, atomic_write_text, read_json
from snnlth.rundir.layout import RunDir, dumps_jsonl
from snnlth.rundir.store import load_blob, save_blob


class EpochHook(Protocol):
    """Runs after every epoch of a phase; returns True to stop the phase. Its state rides in the checkpoint."""

    def after_epoch(self, model: SpikingNet, state: FitState) -> bool: ...

    def state(self) -> dict: ...

    def load(self, state: dict) -> None: ...


@dataclass
class Callbacks:
    on_batch: Callable[[BatchInfo, str], None] | None = None
    on_epoch: Callable[[dict], None] | None = None
    on_event: Callable[[str], None] | None = None


@dataclass
class PhaseResult:
    name: str
    history: list[dict]
    model_state: dict[str, torch.Tensor]

    @property
    def seconds(self) -> float:
        return sum(h["train_seconds"] + h["eval_seconds"] for h in self.history)

    @property
    def train_seconds(self) -> float:
        return sum(h["train_seconds"] for h in self.history)

    @property
    def test_accuracy(self) -> float:
        return self.history[-1]["test_accuracy"]

    @property
    def best_test_accuracy(self) -> float:
        return max(h["test_accuracy"] for h in self.history)


@dataclass
class SearchContext:
    cfg: SearchRunConfig
    run: RunDir
    data: DataBundle
    device: torch.device
    callbacks: Callbacks = field(default_factory=Callbacks)
    rows: list[dict] = field(default_factory=list)  # metrics of finished phases, in execution order
    _shape_model: SpikingNet | None = field(default=None, repr=False)

    # ---- models and states -------------------------------------------------------------------------------------
    def new_model(self, seed_offset: int = 0) -> SpikingNet:
        torch.manual_seed(self.cfg.train.seed + seed_offset)
        spec = self.data.spec
        return create_model(self.cfg.model, spec.in_channels, self.data.image_size, spec.num_classes).to(self.device)

    def shape_model(self) -> SpikingNet:
        """A CPU model of the run's architecture, for names, shapes and counts only: built once, and without
        consuming the global RNG (training results never depend on whether it was built)."""
        if self._shape_model is None:
            spec = self.data.spec
            with torch.random.fork_rng(devices=[]):
                self._shape_model = create_model(self.cfg.model, spec.in_channels, self.data.image_size,
                                                 spec.num_classes)
        return self._shape_model

    def prunable_names(self, model: SpikingNet) -> list[str]:
        """Prunable tensors minus ``--exclude``."""
        return select_prunable(model.prunable_names(), self.cfg.search.exclude)

    def weights(self, model: SpikingNet, names: list[str]) -> M.Weights:
        params = dict(model.named_parameters())
        return {n: params[n] for n in names}

    def save_state_once(self, name: str, model: SpikingNet) -> dict[str, torch.Tensor]:
        """Save ``model``'s state as ``<name>.pt`` unless it exists; return the stored state (init, rewind)."""
        path = self.run.path / f"{name}.pt"
        if not path.exists():
            save_blob(path, {k: v.detach().clone() for k, v in model.state_dict().items()})
        return load_blob(path, map_location=self.device)

    def load_state(self, name: str) -> dict[str, torch.Tensor]:
        return load_blob(self.run.path / f"{name}.pt", map_location=self.device)

    # ---- masks ---------------------------------------------------------------------------------------------------
    def masks_path(self, key: str) -> Path:
        return self.run.path / "masks" / f"{key}.pt"

    def load_masks(self, key: str) -> M.Masks | None:
        path = self.masks_path(key)
        return M.unpack(load_blob(path)) if path.exists() else None

    def save_masks(self, key: str, masks: M.Masks) -> None:
        save_blob(self.masks_path(key), M.pack(masks))

    # ---- phases --------------------------------------------------------------------------------------------------
    def run_phase(self, name: str, model: SpikingNet, start_state: dict[str, torch.Tensor],
                  masks: M.Masks | None, timesteps: int | Callable[[int], int], epochs: int, stream: int,
                  tags: dict[str, Any], hooks: tuple[EpochHook, ...] = ()) -> PhaseResult:
        """Train ``model`` from ``start_state`` (masked) for ``epochs`` epochs with a fresh optimiser and cosine
        schedule; resumable and skipped once done. ``timesteps`` may depend on the epoch (Early-Time warm-up)."""
        done_path = self.run.path / "phases" / f"{name}.pt"
        ckpt_path = self.run.path / "phases" / f"{name}.ckpt.pt"
        if done_path.exists():
            blob = load_blob(done_path, map_location=self.device)
            model.load_state_dict(blob["model"])
            for hook, extra in zip(hooks, blob["extra"]):
                hook.load(extra)
            self.rows.extend(blob["history"])
            return PhaseResult(name, blob["history"], blob["model"])
        model.load_state_dict(start_state)
        enforcer = MaskEnforcer(model, masks) if masks is not None else None
        if enforcer is not None:
            enforcer.weights_()
        optimizer = make_optimizer(model, self.cfg.train)
        state = FitState()
        if ckpt_path.exists():
            ckpt = load_blob(ckpt_path, map_location=self.device)
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            state = FitState(ckpt["epoch"], list(ckpt["history"]))
            for hook, extra in zip(hooks, ckpt["extra"]):
                hook.load(extra)
        label = _label(tags)

        def on_epoch_end(st: FitState) -> bool:
            st.history[-1].update(phase=name, **tags)
            stop = any([hook.after_epoch(model, st) for hook in hooks])
            every = self.cfg.search.checkpoint_every
            if st.epoch % every == 0 or stop or st.epoch == epochs:
                save_blob(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                      "epoch": st.epoch, "history": st.history,
                                      "extra": [hook.state() for hook in hooks]})
            self.write_metrics(st.history)
            if self.callbacks.on_epoch:
                self.callbacks.on_epoch(st.history[-1])
            return stop

        on_batch = (lambda info: self.callbacks.on_batch(info, label)) if self.callbacks.on_batch else None
        t_fn = timesteps if callable(timesteps) else (lambda _e, t=timesteps: t)
        _fit_varying_t(model, optimizer, self, state, epochs, stream, enforcer, on_batch, on_epoch_end, t_fn)
        blob = {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}, "history": state.history,
                "extra": [hook.state() for hook in hooks]}
        save_blob(done_path, blob)
        ckpt_path.unlink(missing_ok=True)
        self.rows.extend(state.history)
        return PhaseResult(name, state.history, blob["model"])

    def write_metrics(self, current: list[dict] = ()) -> None:
        atomic_write_text(self.run.metrics, dumps_jsonl([*self.rows, *current]))

    def event(self, message: str) -> None:
        if self.callbacks.on_event:
            self.callbacks.on_event(message)

    # ---- small records -------------------------------------------------------------------------------------------
    def record(self, name: str, compute: Callable[[], dict]) -> dict:
        """A JSON record computed once and reused on resume (e.g. the Early-Time choice)."""
        path = self.run.path / f"{name}.json"
        if path.exists():
            return read_json(path)
        value = compute()
        atomic_write_json(path, value)
        return value


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
    return " ".join(f"{k} {v}" for k, v in tags.items() if v is not None)


def _fit_varying_t(model, optimizer, ctx: SearchContext, state: FitState, epochs: int, stream: int, enforcer,
                   on_batch, on_epoch_end, t_fn: Callable[[int], int]) -> None:
    """``fit`` epoch by epoch, asking ``t_fn`` for each epoch's T only when that epoch starts: an Early-Time hook
    decides T_early at the end of the warm-up, so later epochs' T is unknown before then."""
    stopped = False

    def end(st: FitState) -> bool:
        nonlocal stopped
        stopped = bool(on_epoch_end(st))
        return stopped

    while state.epoch < epochs and not stopped:
        fit(model, optimizer, ctx.data, ctx.cfg.train, t_fn(state.epoch), state, epochs=epochs,
            stop_epoch=state.epoch + 1, stream=stream, enforcer=enforcer, on_batch=on_batch, on_epoch_end=end)

