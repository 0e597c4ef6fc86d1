"""The paper's settings as named presets: {vgg16, resnet19} × {cifar10, cifar100, svhn, fmnist, tinyimagenet} ×
{imp, imp-et, eb, eb-et}, e.g. ``vgg16-cifar10-imp-et``.

A preset sets every field a search of the paper reads, explicitly (Kim et al. §4.1 and the official code's data
pipeline): SGD momentum 0.9, weight decay 5e-4, lr 0.3 cosine-annealed, batch 128, T = 5; 300 epochs on CIFAR and
TinyImageNet, 150 on SVHN and F-MNIST (resized to 32); 14 rounds of 25 % global magnitude pruning with rewinding to
epoch 20; Early-Bird at IMP's ticket sizes with q = 5, τ = 0.02; Early-Time with N = 2 warm-up epochs and λ = 0.6, its
Table-1 levels (rounds 4, 8, 11, 14: 68.30 / 89.91 / 95.69 / 98.13 % of all parameters) retrained at full T. The run
hash of a preset run holds all these values, so it does not depend on snnlth's defaults.
"""

from __future__ import annotations

import difflib
from typing import Any

from snnlth.errors import ConfigError

MODELS = ("vgg16", "resnet19")
DATASETS = ("cifar10", "cifar100", "svhn", "fmnist", "tinyimagenet")
METHODS = {"imp": ("imp", "off"), "imp-et": ("imp", "auto"), "eb": ("eb", "off"), "eb-et": ("eb", "auto")}
EPOCHS = {"cifar10": 300, "cifar100": 300, "tinyimagenet": 300, "svhn": 150, "fmnist": 150}
TABLE1_ROUNDS = ("4", "8", "11", "14")  # the paper's Table-1 columns: 68.30 / 89.91 / 95.69 / 98.13 % sparsity


def preset(name: str) -> dict[str, dict[str, Any]]:
    """The config tables of preset ``name`` (a :class:`ConfigError` with a suggestion for an unknown name)."""
    presets = names()
    if name not in presets:
        close = difflib.get_close_matches(name, presets, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; `snnlth presets` lists the {len(presets)} presets")
    for model in MODELS:
        for dataset in DATASETS:
            prefix = f"{model}-{dataset}-"
            if name.startswith(prefix) and name[len(prefix):] in METHODS:
                return _tables(model, dataset, name[len(prefix):])
    raise AssertionError(name)


def _tables(model: str, dataset: str, variant: str) -> dict[str, dict[str, Any]]:
    method, early_time = METHODS[variant]
    return {
        "data": {"dataset": dataset, "augment": True, "resize": 32 if dataset == "fmnist" else None,
                 "train_subset": None, "test_subset": None},
        "model": {"model": model, "neuron": "lif", "timesteps": 5, "tau": 4.0 / 3.0, "v_threshold": 1.0,
                  "surrogate": "atan", "alpha": 2.0, "bn_time": "per-step"},
        "train": {"epochs": EPOCHS[dataset], "batch_size": 128, "lr": 0.3, "momentum": 0.9, "weight_decay": 5e-4,
                  "seed": 0, "amp": False},
        "search": {"method": method, "rounds": 14, "prune_rate": 0.25, "scope": "global", "exclude": [],
                   "rewind_epoch": 20, "target_sparsity": ["imp"], "eb_window": 5, "eb_threshold": 0.02,
                   "early_time": early_time, "et_threshold": 0.6, "et_warmup_epochs": 2, "et_batch": 1000,
                   "et_kl": "paper", "retrain_at": list(TABLE1_ROUNDS), "from_run": None},
    }


def names() -> list[str]:
    return [f"{m}-{d}-{v}" for m in MODELS for d in DATASETS for v in METHODS]


def describe(name: str) -> str:
    t = preset(name)
    s, tr = t["search"], t["train"]
    what = {"imp": "IMP", "eb": "Early-Bird"}[s["method"]] + (" + Early-Time" if s["early_time"] != "off" else "")
    return (f"{what}, {t['model']['model']} on {t['data']['dataset']}{' resized to 32' if t['data']['resize'] else ''}"
            f", T=5, {tr['epochs']} epochs, lr 0.3, {s['rounds']} rounds of 25 %, rewind epoch 20")


def explicit_values(cfg: Any, ignored: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """For a run of a preset (``cfg.search.preset``): the current value of every field the preset sets, except the
    ``ignored`` ones (fields the run's method does not read). Merged into the run's identity, so its hash holds them
    all, whatever snnlth's defaults are."""
    name = getattr(cfg.search, "preset", None)
    if not name:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for sec, table in preset(name).items():
        for key in table:
            if f"{sec}.{key}" not in ignored:
                value = getattr(getattr(cfg, sec), key)
                out.setdefault(sec, {})[key] = list(value) if isinstance(value, tuple) else value
    return out
