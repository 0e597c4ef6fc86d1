"""Ticket-search strategies. Importing this package registers the built-in methods (imp, eb, random, reinit) in
:data:`snnlth.methods.registry.METHODS`."""

from snnlth.methods import early_bird, imp, one_shot, random_pruning, reinit, transfer  # noqa: F401 (registering)
from snnlth.methods.registry import METHODS, MethodResult, MethodSpec, register_method

__all__ = ["METHODS", "MethodResult", "MethodSpec", "register_method"]
