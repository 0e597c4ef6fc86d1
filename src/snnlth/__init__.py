"""snnlth: lottery tickets in deep spiking neural networks.

The stable API is what this package root exports: ``find_ticket``, ``train``, ``search`` (both searches return a
``TicketSearch``), ``load_ticket``, ``load_dataset``, ``count_ops``, ``to_nir``, ``adapters``, ``masks``, the config
classes and the error types. Every other module is internal and may change. Heavy modules load on first use, so
``import snnlth`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from snnlth.config import (
    DataConfig,
    ModelConfig,
    RuntimeConfig,
    SearchConfig,
    SearchRunConfig,
    TrainConfig,
    TrainRunConfig,
)
from snnlth.errors import ConfigError, DataError, NotLearningError, RunDirError, SnnlthError

__version__ = "0.3.0"

_LAZY = {"find_ticket": ("snnlth.find", "find_ticket"), "TicketSearch": ("snnlth.result", "TicketSearch"),
         "train": ("snnlth.api", "train"), "search": ("snnlth.api", "search"),
         "load_ticket": ("snnlth.export", "load_ticket"), "export_ticket": ("snnlth.export", "export_ticket"),
         "load_dataset": ("snnlth.data.loader", "load_dataset"), "count_ops": ("snnlth.ops", "count_ops"),
         "to_nir": ("snnlth.nir_export", "to_nir"),
         "adapters": ("snnlth.adapters", None), "masks": ("snnlth.masks", None)}

if TYPE_CHECKING:
    from snnlth import adapters, masks
    from snnlth.api import search, train
    from snnlth.data.loader import load_dataset
    from snnlth.export import export_ticket, load_ticket
    from snnlth.find import find_ticket
    from snnlth.nir_export import to_nir
    from snnlth.ops import count_ops
    from snnlth.result import TicketSearch


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'snnlth' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = ["ConfigError", "DataConfig", "DataError", "ModelConfig", "NotLearningError", "RunDirError", "RuntimeConfig",
           "SearchConfig", "SearchRunConfig", "SnnlthError", "TicketSearch", "TrainConfig", "TrainRunConfig",
           "__version__", "adapters", "count_ops", "export_ticket", "find_ticket", "load_dataset", "load_ticket",
           "masks", "search", "to_nir", "train"]
