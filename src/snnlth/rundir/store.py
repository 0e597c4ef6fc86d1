"""The run store: the single reader and writer of a run directory's tensors and records.

Every write is atomic (temp file, fsync, ``os.replace``) and every tensor file carries a SHA-256 of its payload that
is checked on load, so a crash leaves either the old file or the new one, and a damaged file is named, never used.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as tdist

from snnlth import masks as M
from snnlth.errors import RunDirError
from snnlth.rundir.atomic import atomic_write_bytes, atomic_write_json, read_json
from snnlth.rundir.faults import fault_point
from snnlth.rundir.layout import Identity, RunLayout
from snnlth.rundir.lock import RunLock

_MAGIC = b"SNNLTH1\n"


def save_blob(path: str | Path, obj: Any) -> None:
    """``torch.save`` ``obj`` atomically, prefixed by a SHA-256 of the payload that :func:`load_blob` verifies."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    atomic_write_bytes(path, _MAGIC + hashlib.sha256(payload).digest() + payload)


def _verified_payload(path: Path) -> bytes:
    """The payload of a file :func:`save_blob` wrote, after checking its checksum."""
    raw = path.read_bytes()
    head = len(_MAGIC) + 32
    if len(raw) < head or not raw.startswith(_MAGIC) or hashlib.sha256(raw[head:]).digest() != raw[len(_MAGIC):head]:
        raise RunDirError(f"{path} is damaged (checksum mismatch); delete it to restart that stage")
    return raw[head:]


def load_blob(path: str | Path, map_location: Any = "cpu") -> Any:
    """Load what :func:`save_blob` wrote, after checking its checksum."""
    payload = _verified_payload(Path(path))
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)


class RunDirWarning(UserWarning):
    """Something in a run directory was damaged and worked around (the CLI prints it as one line)."""


def previous(path: Path) -> Path:
    """Where the checkpoint before ``path`` is kept: ``checkpoint.pt`` -> ``checkpoint.pt.prev``."""
    return path.with_name(path.name + ".prev")


class RunStore(RunLayout):
    """A run directory with its tensors: model states, masks, training phases and their checkpoints, JSON records.

    ``map_location`` is where loaded tensors go (the training device)."""

    def __init__(self, path: str | Path, map_location: Any = "cpu") -> None:
        super().__init__(Path(path))
        object.__setattr__(self, "map_location", map_location)
        object.__setattr__(self, "lock", RunLock(self.path))

    def open(self, identity: Identity, cfg: Any, **extra: Any) -> None:
        """Start or continue writing this run: take the run's lock (a second writer is refused, naming the owner's
        pid), then the header files (``extra`` goes into ``config.json``; ``env.json`` gains one entry per start)."""
        self.lock.acquire()
        self.write_header(identity, cfg, environment(), **extra)

    def close(self) -> None:
        """Stop writing: release the lock (the process's end releases it too)."""
        self.lock.release()

    # ---- model states (init, rewind) ------------------------------------------------------------------------------
    def save_state_once(self, name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Store ``state`` as ``<name>.pt`` unless it exists; return the stored one (resume gets the original)."""
        if not self.state_file(name).exists():
            save_blob(self.state_file(name), {k: v.detach().clone() for k, v in state.items()})
        return self.load_state(name)

    def load_state(self, name: str) -> dict[str, torch.Tensor]:
        return load_blob(self.state_file(name), map_location=self.map_location)

    # ---- masks ------------------------------------------------------------------------------------------------------
    def save_masks(self, key: str, masks: M.Masks) -> None:
        fault_point(f"masks:{key}")
        save_blob(self.masks_file(key), M.pack(masks))
        self._log_made(self.masks_file(key))

    def load_masks(self, key: str) -> M.Masks | None:
        blob = self._load_made(self.masks_file(key), "cpu")
        return None if blob is None else M.unpack(blob)

    # ---- training phases ------------------------------------------------------------------------------------------
    def load_phase(self, name: str) -> dict | None:
        """A finished phase (``model``, ``history``, ``extra``), or None (also when it was damaged and set aside
        to be recomputed: see :meth:`_load_made`)."""
        return self._load_made(self.phase_file(name), self.map_location)

    def save_phase(self, name: str, blob: dict) -> None:
        """Store a finished phase, then drop its checkpoints."""
        save_blob(self.phase_file(name), blob)
        self._log_made(self.phase_file(name))
        self.phase_checkpoint(name).unlink(missing_ok=True)
        previous(self.phase_checkpoint(name)).unlink(missing_ok=True)

    def load_checkpoint(self, name: str) -> dict | None:
        return self._load_checkpoint(self.phase_checkpoint(name))

    def save_checkpoint(self, name: str, blob: dict) -> None:
        self._save_checkpoint(self.phase_checkpoint(name), blob)

    # ---- train runs -----------------------------------------------------------------------------------------------
    def load_train_checkpoint(self) -> dict | None:
        return self._load_checkpoint(self.checkpoint)

    def save_train_checkpoint(self, blob: dict) -> None:
        self._save_checkpoint(self.checkpoint, blob)

    # ---- finished files and what was derived from them -----------------------------------------------------------
    def _made(self) -> list[str]:
        """Finished masks and phases in the order they were made (``made.json``): each is derived from those
        before it, never from those after."""
        return list(read_json(self.made_log)) if self.made_log.exists() else []

    def _log_made(self, path: Path) -> None:
        rel = path.relative_to(self.path).as_posix()
        made = self._made()
        if rel not in made:  # rewritten with the same content (a resume stores round 0's masks again): same place
            atomic_write_json(self.made_log, [*made, rel])

    def _load_made(self, path: Path, map_location: Any) -> Any:
        """Load a finished mask or phase file. A damaged one is set aside with everything made after it (later
        masks, phases, their checkpoints, the summary) in ``damaged/<time>/``, named in one warning line, and
        None is returned: the caller recomputes it, and the rest follows from it, never mixed with files that were
        derived from the damaged one. Without ``made.json`` (a run from before 0.4) the damage is an error."""
        if not path.exists():
            return None
        try:
            return load_blob(path, map_location=map_location)
        except RunDirError as exc:
            if not self.lock.held:  # a reader (export, find_ticket's results) never changes a run
                raise RunDirError(f"{exc.args[0].split(';')[0]}; delete {self.summary.name} and rerun the run's "
                                  "command: it and everything made after it are recomputed") from None
            rel = path.relative_to(self.path).as_posix()
            made = self._made()
            if rel not in made:
                raise RunDirError(f"{exc} (this run predates made.json: delete the file and everything made after "
                                  "it, or the run directory)") from None
            later = made[made.index(rel) + 1:]
            self._set_aside([rel, *later])
            atomic_write_json(self.made_log, made[: made.index(rel)])
            warnings.warn(f"{path} is damaged; it and the {len(later)} file(s) made after it"
                          f"{' (' + ', '.join(later[:3]) + (', ...' if len(later) > 3 else '') + ')' if later else ''}"
                          f" were set aside in {self.path / 'damaged'} and are recomputed", RunDirWarning,
                          stacklevel=3)
            return None

    def _set_aside(self, rels: list[str]) -> None:
        dest = self.path / "damaged" / time.strftime("%Y%m%dT%H%M%S")
        victims = [self.path / r for r in rels]
        for r in rels:  # their checkpoints, and the summary, come from them too
            if r.startswith("phases/"):
                ckpt = self.phase_checkpoint(Path(r).stem)
                victims += [ckpt, previous(ckpt)]
        victims.append(self.summary)
        for src in victims:
            if src.exists():
                target = dest / src.relative_to(self.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, target)

    # ---- checkpoints with a fallback ------------------------------------------------------------------------------
    def _save_checkpoint(self, path: Path, blob: dict) -> None:
        """Write a checkpoint, keeping the one before it as ``<name>.prev`` (a hard link, no copy, so ``path``
        itself is never missing): if the new one is ever found damaged, a resume falls back to the previous one and
        loses one checkpoint interval more."""
        if path.exists():
            link = path.with_name(path.name + ".prev.link")
            link.unlink(missing_ok=True)
            try:
                os.link(path, link)
            except OSError:  # a file system without hard links
                shutil.copy2(path, link)
            os.replace(link, previous(path))
        save_blob(path, blob)
        _verified_payload(path)  # read back (from the page cache) and checksummed; no need to unpickle it

    def _load_checkpoint(self, path: Path) -> dict | None:
        """The checkpoint at ``path``; a damaged one is named in a :class:`RunDirWarning` and its previous checkpoint
        is used instead; both damaged (or no previous one) is a :class:`RunDirError` naming them."""
        prev = previous(path)
        if not path.exists() and not prev.exists():
            return None
        try:
            return load_blob(path, map_location=self.map_location)
        except (RunDirError, FileNotFoundError) as exc:
            if not prev.exists():
                raise RunDirError(f"{exc}; no previous checkpoint to fall back to: delete it to restart that "
                                  "stage") from None
            try:
                blob = load_blob(prev, map_location=self.map_location)
            except RunDirError:
                raise RunDirError(f"{path} and the previous checkpoint {prev.name} are both damaged; delete both to "
                                  "restart that stage") from None
            warnings.warn(f"{path} is damaged or missing; resuming from the previous checkpoint {prev.name} "
                          f"(epoch {blob.get('epoch')})", RunDirWarning, stacklevel=3)
            return blob

    # ---- small JSON records ---------------------------------------------------------------------------------------
    def has_record(self, name: str) -> bool:
        return self.record_file(name).exists()

    def record(self, name: str, compute: Callable[[], dict]) -> dict:
        """A JSON record computed once and reused on resume (e.g. the Early-Time choice)."""
        path = self.record_file(name)
        if path.exists():
            return read_json(path)
        value = compute()
        fault_point(f"record:{name}")
        atomic_write_json(path, value)
        return value


def environment() -> dict[str, Any]:
    """Facts needed to trust a number later: versions, git sha, device, threads, processes of a data-parallel
    run."""
    from snnlth import __version__

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    cuda = torch.cuda.is_available()
    world = tdist.get_world_size() if tdist.is_initialized() else 1
    return {
        "snnlth": __version__, "git_sha": sha, "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None, "world_size": world,
    }
