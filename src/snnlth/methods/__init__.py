"""Ticket-search methods, one module each, registered by name in :data:`snnlth.methods.registry.METHODS`
(``snnlth methods`` lists them: imp, eb, gmp, lrr, random, reinit, transfer, snip, oneshot). Importing this package
registers the built-in ones. A method is ``run(kit, source) -> MethodResult`` over a
:class:`~snnlth.methods.kit.MethodKit`; round-based methods compose the Early-Time and round-stop modifiers through
:mod:`snnlth.methods.rounds`."""

from snnlth.methods import early_bird, gmp, imp, lrr, one_shot, random_pruning, reinit, transfer  # noqa: F401 (registering)
from snnlth.methods.registry import METHODS, MethodResult, MethodSpec, register_method

__all__ = ["METHODS", "MethodResult", "MethodSpec", "register_method"]
