"""Checksummed tensor blobs (checkpoints, masks), written atomically."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from snnlth.errors import RunDirError
from snnlth.rundir.atomic import atomic_write_bytes

_MAGIC = b"SNNLTH1\n"


def save_blob(path: str | Path, obj: Any) -> None:
    """``torch.save`` ``obj`` atomically, prefixed by a SHA-256 of the payload that :func:`load_blob` verifies."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    atomic_write_bytes(path, _MAGIC + hashlib.sha256(payload).digest() + payload)


def load_blob(path: str | Path, map_location: Any = "cpu") -> Any:
    """Load what :func:`save_blob` wrote, after checking its checksum."""
    path = Path(path)
    raw = path.read_bytes()
    head = len(_MAGIC) + 32
    if len(raw) < head or not raw.startswith(_MAGIC) or hashlib.sha256(raw[head:]).digest() != raw[len(_MAGIC):head]:
        raise RunDirError(f"{path} is damaged (checksum mismatch); delete it to restart that stage")
    return torch.load(io.BytesIO(raw[head:]), map_location=map_location, weights_only=True)
