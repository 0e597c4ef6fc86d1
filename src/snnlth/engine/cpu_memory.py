"""CPU training memory policy: keep freed memory in the process for reuse.

glibc serves allocations above a threshold (at most 32 MB) with fresh ``mmap`` pages and returns them on free, so
every large activation of a training step is page-faulted in anew: an elementwise op into a fresh 64 MB buffer costs
about twice one into a reused buffer (bench/engine.py, ``--compare alloc``). PyTorch has a caching allocator for
CUDA, none for CPU. :func:`keep_freed_memory` tells glibc (``mallopt``) to serve every allocation from its heap and
not to trim it: freed activations are reused by the next step. The cost: the process keeps its peak heap until it
exits. Applied once per process when CPU training starts; ``SNNLTH_CPU_MALLOC=system`` leaves glibc as it is, and
other C libraries (musl, macOS) are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_applied: list[bool] = []  # once per process (mallopt settings are process-wide by nature)


def keep_freed_memory() -> bool:
    """Serve large allocations from glibc's heap and keep freed memory (see the module docstring). Returns whether
    the policy is in force. Idempotent; a no-op off Linux/glibc or with ``SNNLTH_CPU_MALLOC=system``."""
    if _applied:
        return _applied[0]
    ok = False
    if sys.platform.startswith("linux") and os.environ.get("SNNLTH_CPU_MALLOC", "keep") != "system":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc
            mallopt = None
        if mallopt is not None:
            ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    _applied.append(ok)
    return ok
