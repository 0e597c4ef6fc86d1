"""SNN architectures behind one protocol (:class:`SpikingNet`) and a registry."""

from snnlth.models.catalog import MODELS, create_model, list_models
from snnlth.models.protocol import SpikingNet

__all__ = ["MODELS", "SpikingNet", "create_model", "list_models"]
