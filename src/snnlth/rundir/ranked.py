"""The run store seen from one rank of a data-parallel search: rank 0 alone reads and writes the run directory; every
other rank gets rank 0's answers by broadcast, so all ranks take the same path (a stored mask found, a phase already
finished, an Early-Time choice recorded) and no rank but rank 0 needs the directory at all (nodes without a shared
file system work). Masks a search computes are compared across ranks by checksum before rank 0 stores them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from snnlth import masks as M
from snnlth.parallel import Dist, digest, to_device
from snnlth.rundir.store import RunStore

# RunStore methods that only write: rank 0 runs them, the others skip them
WRITES = frozenset({"open", "close", "write_header", "write_metrics", "write_summary", "save_checkpoint",
                    "save_phase", "save_train_checkpoint"})
# methods that only name paths: every rank runs them itself
PATHS = frozenset({"state_file", "record_file", "masks_file", "phase_file", "phase_checkpoint"})


class RankedStore:
    """A :class:`~snnlth.rundir.store.RunStore` for one rank: writes on rank 0 only; reads (and read-or-compute
    calls such as :meth:`record`) run on rank 0 and their result, or their error, is broadcast; tensors arrive on
    ``device``."""

    def __init__(self, inner: RunStore, dist: Dist, device: torch.device) -> None:
        self._inner, self.dist, self.device = inner, dist, device

    @property
    def path(self):
        return self._inner.path

    @property
    def map_location(self):
        return self.device

    def _on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on rank 0, its result (or the exception it raised) on every rank."""
        box = None
        if self.dist.is_main:
            try:
                box = ("ok", fn())
            except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
                box = ("error", exc)
        kind, value = self.dist.broadcast(box)
        if kind == "error":
            raise value
        return to_device(value, self.device)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name in PATHS:
            return attr
        if name in WRITES:
            return lambda *a, **k: attr(*a, **k) if self.dist.is_main else None
        return lambda *a, **k: self._on_main(lambda: attr(*a, **k))

    def save_masks(self, key: str, masks: M.Masks) -> None:
        """Every rank computed ``masks``: they must agree (checksums compared) before rank 0 stores them."""
        self.dist.check_same(digest(masks), f"the masks {key}")
        if self.dist.is_main:
            self._inner.save_masks(key, masks)

    def record(self, name: str, compute: Callable[[], dict]) -> dict:
        """Computed once, on rank 0 (the Early-Time choice measures rank 0's network), and shared."""
        return self._on_main(lambda: self._inner.record(name, compute))


def ranked(store: RunStore, dist: Dist, device: torch.device) -> RunStore | RankedStore:
    """``store`` itself in a world of one, else its :class:`RankedStore` (rank 0's reads mapped to the CPU first)."""
    if not dist.active:
        return store
    return RankedStore(RunStore(store.path, map_location="cpu"), dist, device)
