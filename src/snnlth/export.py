"""Tickets as safetensors files: per prunable tensor the mask packed as bits and only the surviving values, the
other tensors dense, and metadata (model, dataset, T, sparsity, accuracy, config). ``load_ticket`` rebuilds the model.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from snnlth import masks as M
from snnlth.config import ModelConfig
from snnlth.config_io import config_from_dict
from snnlth.errors import ConfigError, RunDirError
from snnlth.models.catalog import USER_MODEL, create_model
from snnlth.models.protocol import Normalize
from snnlth.rundir.atomic import atomic_write_bytes
from snnlth.rundir.store import RunStore

FORMAT = "snnlth-ticket-1"


@dataclass
class Ticket:
    model: nn.Module
    masks: M.Masks
    metadata: dict[str, Any]


def select_level(levels: list[dict], round_: int | None, sparsity: float | None) -> dict:
    """The level of ``round_``, or the one nearest ``sparsity`` (prunable fraction, within 0.5 %), or the sparsest
    final one; a :class:`ConfigError` listing what exists otherwise."""
    listing = ", ".join(f"round {lv['round']} ({100 * lv['sparsity_prunable']:.2f} %)" if lv["round"] is not None
                        else f"{100 * lv['sparsity_prunable']:.2f} %" for lv in levels)
    if round_ is not None:
        found = [lv for lv in levels if lv["round"] == round_]
        if not found:
            raise ConfigError(f"--round {round_} does not exist in this run; it has {listing}")
        return found[0]
    if sparsity is not None:
        best = min(levels, key=lambda lv: abs(lv["sparsity_prunable"] - sparsity))
        if abs(best["sparsity_prunable"] - sparsity) > 0.005:
            raise ConfigError(f"--sparsity {sparsity} matches no level of this run; it has {listing}")
        return best
    finals = [lv for lv in levels if lv["final"]] or levels
    return max(finals, key=lambda lv: lv["sparsity_prunable"])


def ticket_tensors(state: dict[str, torch.Tensor], masks: M.Masks, half: bool) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in state.items():
        if name in masks:
            m = masks[name].cpu()
            out[f"{name}::mask"] = torch.from_numpy(np.packbits(m.numpy().ravel()))
            values = t.detach().cpu()[m].contiguous()
            out[f"{name}::values"] = values.half() if half else values.float()
        else:
            out[name] = t.detach().cpu().contiguous()
    return out


def export_ticket(run_dir: str | Path, out: str | Path, round_: int | None = None, sparsity: float | None = None,
                  half: bool = False) -> dict[str, Any]:
    """Write the ticket of one level of a finished search run; returns the metadata and the sizes."""
    run = RunStore(run_dir)
    if not run.is_finished():
        raise RunDirError(f"{run.path} is not a finished search run (no summary.json); finish or resume it first")
    summary, config = run.read_summary(), run.read_config()
    level = select_level(summary["levels"], round_, sparsity)
    phase = run.load_phase(level["phase"]) if level.get("phase") else None
    masks = run.load_masks(level["masks"])
    if phase is None or masks is None:
        raise RunDirError(f"{run.path}: the trained state or the masks of this level are missing "
                          f"(phase {level.get('phase')}, masks {level.get('masks')}); resume the search")
    state = phase["model"]
    user = config["model"]["model"].startswith(USER_MODEL)
    env_shape = {} if user else _shape_of(config, state)
    meta = {"format": FORMAT, "model": config["model"]["model"], "dataset": config["data"]["dataset"],
            "timesteps": str(level["timesteps"]), "sparsity_prunable": repr(level["sparsity_prunable"]),
            "sparsity_all": repr(level["sparsity_all"]), "test_accuracy": repr(level["test_accuracy"]),
            "round": str(level["round"]), "method": summary["method"], "values_dtype": "fp16" if half else "fp32",
            "model_config": json.dumps(config["model"]), "config": json.dumps({k: config[k] for k in
                                                                                ("data", "model", "train", "search")}),
            "shapes": json.dumps({n: list(m.shape) for n, m in masks.items()}), **env_shape}
    data = st_save(ticket_tensors(state, masks, half), metadata=meta)
    atomic_write_bytes(out, data)
    dense = sum(t.numel() * t.element_size() for t in state.values())
    return {"metadata": meta, "file_bytes": len(data), "dense_bytes": dense, "level": level}


def _shape_of(config: dict, state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Input channels, image size and classes, read back from the run (needed to rebuild the model)."""
    from snnlth.data.catalog import DATASETS

    spec = DATASETS.get(config["data"]["dataset"])
    size = config["data"].get("resize") or spec.image_size
    return {"in_channels": str(spec.in_channels), "image_size": str(size), "num_classes": str(spec.num_classes),
            "mean": json.dumps(list(spec.mean)), "std": json.dumps(list(spec.std)),
            "resize": json.dumps(config["data"].get("resize"))}


def load_ticket(path: str | Path, device: str | torch.device | None = None, *, model: nn.Module | None = None
                ) -> Ticket:
    """A ticket file's model with its masks applied (pruned weights exactly 0), ready to use: in eval mode (train
    mode would rewrite the BatchNorm statistics from whatever it is shown).

    Without ``model``, snnlth rebuilds the network of the run (one of its own architectures), with the run's input
    normalisation inside, so ``ticket.model(images)`` takes raw images in [0, 1] and gives the run's accuracy. With
    ``model`` (a user's network of the same architecture: the one given to :func:`snnlth.find_ticket`, or an
    adapter of it), the ticket is loaded into that model, which keeps its device unless ``device`` is given."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        tensors = st_load(raw)
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except FileNotFoundError:
        raise ConfigError(f"{path} not found; give the file written by `snnlth export`") from None
    except Exception as exc:  # noqa: BLE001 - any parse failure means this is not a ticket file
        raise ConfigError(f"{path} is not a readable ticket file ({exc}); export it again") from None
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an snnlth ticket (format {meta.get('format')!r}); export it again")
    state, masks = _unpack(tensors, json.loads(meta["shapes"]))
    if model is not None:
        _load_into(model, state, path)
        if device is not None:
            model.to(device)
        return Ticket(model.eval(), masks, meta)
    if meta["model"].startswith(USER_MODEL):
        raise ConfigError(f"{path} is a ticket of your own network ({meta['model'][len(USER_MODEL):]}); load it into "
                          "that network: load_ticket(path, model=net)")
    cfg = config_from_dict(_ModelOnly, {"model": json.loads(meta["model_config"])}).model
    cfg = dataclasses.replace(cfg, timesteps=int(meta["timesteps"]))
    model = create_model(cfg, int(meta["in_channels"]), int(meta["image_size"]), int(meta["num_classes"]))
    model.load_state_dict(state)
    if "mean" in meta:  # tickets exported before 0.2 carry no normalisation: their model takes normalised input
        model.input_transform = Normalize(tuple(json.loads(meta["mean"])), tuple(json.loads(meta["std"])),
                                          json.loads(meta["resize"]))
    return Ticket(model.to(device or "cpu").eval(), masks, meta)


def _unpack(tensors: dict[str, torch.Tensor], shapes: dict[str, list[int]]) -> tuple[dict, M.Masks]:
    """The full state dict (pruned entries 0) and the masks of a ticket file's tensors."""
    state, masks = {}, {}
    for name, shape in shapes.items():
        m = torch.from_numpy(np.unpackbits(tensors[f"{name}::mask"].numpy(), count=math.prod(shape)).astype(bool))
        w = torch.zeros(math.prod(shape), dtype=torch.float32)
        w[m] = tensors[f"{name}::values"].float()
        state[name], masks[name] = w.view(shape), m.view(shape)
    state.update({k: v for k, v in tensors.items() if "::" not in k})
    return state, masks


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load a ticket's state into a user's model after checking that every name and shape fits."""
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [n for n in state if n in own and tuple(own[n].shape) != tuple(state[n].shape)]
    if missing or extra or wrong:
        what = (f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)} there, {tuple(own[wrong[0]].shape)} here"
                if wrong else f"{missing[0]} is missing from the ticket" if missing else f"{extra[0]} is not in "
                "this model")
        raise ConfigError(f"{path} does not fit this model ({what}); pass a network of the architecture the ticket "
                          "was searched on")
    model.load_state_dict({n: state[n].to(own[n].dtype) for n in own})


@dataclass(frozen=True)
class _ModelOnly:
    model: ModelConfig = field(default_factory=ModelConfig)
