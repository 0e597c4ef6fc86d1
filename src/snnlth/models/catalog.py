"""Model registry: ``create_model(cfg, in_channels, image_size, num_classes)`` and ``list_models()``."""

from __future__ import annotations

from snnlth.config import ModelConfig
from snnlth.models.convnet import ConvNet, LeNet300
from snnlth.models.protocol import SpikingNet, parts_from
from snnlth.models.resnet import ResNet19
from snnlth.models.vgg import VGG
from snnlth.registry import Registry

USER_MODEL = "user:"  # model names of searches of a user's own network (snnlth.find_ticket), e.g. "user:Net"

MODELS: Registry[type[SpikingNet]] = Registry("model")
MODELS.register("convnet")(ConvNet)
MODELS.register("lenet300")(LeNet300)
MODELS.register("vgg16")(VGG)
MODELS.register("resnet19")(ResNet19)


def list_models() -> list[str]:
    return MODELS.names()


def create_model(cfg: ModelConfig, in_channels: int, image_size: int, num_classes: int) -> SpikingNet:
    """Build the named architecture for inputs ``[B, in_channels, image_size, image_size]``."""
    cls = MODELS.get(cfg.model)
    return cls(in_channels, image_size, num_classes, parts_from(cfg), timesteps=cfg.timesteps)
