"""Named crash points for tests: ``SNNLTH_FAULT_AT=<point>[@N]`` kills this process with SIGKILL the N-th time (default
the first) it reaches a point matching ``<point>`` (shell-style wildcards), as a power cut would.

Points: ``write:<file name>`` (a file fully written to its temp file, not yet renamed into place), ``masks:<key>``
(masks computed, not yet stored: pruning, an Early-Bird detection), ``record:<name>`` (a record computed, not yet
stored: the Early-Time choice), ``epoch:<phase>`` (an epoch trained, on every rank of a data-parallel run, before
anything of it is stored). ``SNNLTH_FAULT_RANK=<r>`` limits the kill to rank r of a torchrun. Without the variable
this is one dictionary lookup.

``SNNLTH_NAN_AT=<epoch>:<batch>`` (1-based) makes that batch's training loss NaN instead (on rank
``SNNLTH_FAULT_RANK`` only, if set): a numerical fault on one rank.
"""

from __future__ import annotations

import fnmatch
import os
import signal

import torch

_seen: dict[str, int] = {}  # per process: how often each matching point was reached


def fault_point(name: str) -> None:
    spec = os.environ.get("SNNLTH_FAULT_AT")
    if not spec:
        return
    pattern, _, nth = spec.partition("@")
    if not fnmatch.fnmatchcase(name, pattern):
        return
    rank = os.environ.get("SNNLTH_FAULT_RANK")
    if rank is not None and rank != os.environ.get("RANK", "0"):
        return
    _seen[pattern] = _seen.get(pattern, 0) + 1
    if _seen[pattern] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def nan_point(loss: torch.Tensor, epoch: int, batch: int) -> torch.Tensor:
    """``loss``, or NaN at the batch ``SNNLTH_NAN_AT`` names (``epoch``, ``batch``: 0-based here)."""
    spec = os.environ.get("SNNLTH_NAN_AT")
    if not spec or spec != f"{epoch + 1}:{batch + 1}":
        return loss
    rank = os.environ.get("SNNLTH_FAULT_RANK")
    if rank is not None and rank != os.environ.get("RANK", "0"):
        return loss
    return loss * float("nan")
