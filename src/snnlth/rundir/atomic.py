"""Crash-safe file writes (temp file in the same directory -> fsync -> ``os.replace`` -> fsync of the directory), so a
reader sees the old file or the new one, never a torn one. No torch here: reports use it too."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from snnlth.errors import RunDirError, StorageError
from snnlth.rundir.faults import fault_point


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def sigint_deferred():
    """Hold Ctrl-C (SIGINT) back while a file (or a group of files that belong together, such as a checkpoint and
    its metrics) is written: the write completes, then the interrupt is acted on as it would have been. (A handler
    that only records it, not a signal mask: the signal may land on any of torch's threads.) Handlers can be set
    in the main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            if callable(previous):
                previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically; a crash leaves the previous content intact, Ctrl-C waits for the
    write to finish, and a failed write (disk full, permission denied) is a :class:`StorageError` naming the path."""
    path = Path(path)
    tmp = None
    try:
        with sigint_deferred():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            fault_point(f"write:{path.name}")
            os.replace(tmp, path)
            tmp = None
            _fsync_dir(path.parent)
    except OSError as exc:
        kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
        raise StorageError(f"cannot write {path}: {exc.strerror or exc} ({kept}); free disk space or fix the "
                           "permissions, then rerun the same command to resume") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a damaged file is a :class:`RunDirError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path} is not valid JSON ({exc}); delete the run directory or restore the file") from None
