"""The compiled LIF kernel: ``torch.compile`` of the LIF's compiler-friendly loops and of the fused BatchNorm + LIF
functions (:data:`snnlth.snn.fused.PURE`), built on first use (Triton on CUDA, C++ on CPU). The engine hands one to
the LIF layers of a run (``--lif-kernel compiled``, or ``auto``'s choice). Should compiling fail (no compiler, an
unsupported device), the kernel warns once and from then on runs the same maths uncompiled: the LIF's loops eagerly,
BatchNorm and LIF layer by layer."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from snnlth.snn.fused import PURE
from snnlth.snn.neuron import EAGER


def allow_variants(limit: int = 64) -> None:
    """Let a compiled kernel keep more variants than torch's default of 8 (each T, layout and residual or not is
    one; Early-Time runs two Ts): past the limit torch would run the uncompiled loops, several times slower."""
    import torch._dynamo

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.7
    setattr(config, name, max(getattr(config, name), limit))


class CompiledKernel:
    """A :class:`~snnlth.snn.neuron.LIFKernel` that fuses (``fuses`` until compiling has failed once). torch keeps
    compiled code per function, so kernels made for later runs of a process compile nothing again."""

    name = "compiled"
    flat = True

    def __init__(self, compile_fn: Callable[[Callable], Callable] | None = None) -> None:
        self._compile = compile_fn or (lambda fn: torch.compile(fn, dynamic=True))
        self._compiled: dict[str, Callable] = {}
        self.failed: str | None = None

    @property
    def fuses(self) -> bool:
        return self.failed is None

    def charges(self, *args):
        return self._run("charges", args)

    def input_grads(self, *args):
        return self._run("input_grads", args)

    def bn_charges(self, *args):
        return self._run("bn_charges", args)

    def bn_input_grads(self, *args):
        return self._run("bn_input_grads", args)

    def _run(self, which: str, args: tuple):
        if self.failed:
            return _fallback(which)(*args)
        try:
            return self._function(which)(*args)
        except Exception as exc:  # noqa: BLE001 - any compile failure falls back to the same maths, uncompiled
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                raise  # out of memory is not the kernel's fault: the eager loops would need more
            self.fail(exc)
            return _fallback(which)(*args)

    def _function(self, which: str) -> Callable:
        if which not in self._compiled:
            allow_variants()
            self._compiled[which] = self._compile(getattr(PURE, which))
        return self._compiled[which]

    def fail(self, exc: Exception) -> None:
        """Give up compiling (the LIF's loops and the fused BN+LIF), with one warning."""
        self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        warnings.warn(f"the compiled LIF kernel failed ({self.failed}); using the eager one (--lif-kernel eager "
                      "silences this)", RuntimeWarning, stacklevel=4)

    def __deepcopy__(self, memo: dict) -> CompiledKernel:
        return self  # shared by the copies of a model: compiled code is per process anyway


def _fallback(which: str) -> Callable:
    """The uncompiled function of the same maths: the LIF's eager loops, the fused functions as they are (a call
    already inside the fused operation finishes there; later layers run unfused since ``fuses`` is False)."""
    return getattr(EAGER if which in ("charges", "input_grads") else PURE, which)
