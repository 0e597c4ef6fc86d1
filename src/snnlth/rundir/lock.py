"""One writer per run directory: an advisory lock on ``<run>/.lock`` holding the owner's pid.

The lock is the kernel's (``flock``): it goes away with its process, however that process ends, so a lock left by a
dead process is simply taken over; the pid in the file is only for the message. The file itself stays (deleting it
would let a second process lock a different inode of the same name). Where ``fcntl`` is missing (Windows) the pid
in the file is checked for liveness instead.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from snnlth.errors import RunDirError

LOCK = ".lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class RunLock:
    """Held from :meth:`acquire` until :meth:`release` (or the process's end)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def owner(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        if self._fh is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                self._refuse(self.owner())
        else:  # pragma: no cover - Windows
            other = self.owner()
            if other.get("pid") not in (None, os.getpid()) and other.get("host") == socket.gethostname() \
                    and _alive(int(other["pid"])):
                fh.close()
                self._refuse(other)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime(
            "%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv[:3])}))
        fh.flush()
        self._fh = fh

    def _refuse(self, other: dict) -> None:
        who = f"process {other.get('pid', '?')}" + (f" on {other['host']}" if other.get("host") else "")
        since = f" since {other['since']}" if other.get("since") else ""
        raise RunDirError(f"{self.path.parent} is in use by {who}{since}; wait for it to finish or stop it, or "
                          "choose another --out")

    def release(self) -> None:
        if self._fh is None:
            return
        if fcntl is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None
