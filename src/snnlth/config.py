"""Typed, validated configuration: one frozen dataclass per concern.

Every field maps to one CLI flag and one TOML key (``timesteps`` ↔ ``--timesteps`` ↔ ``[model] timesteps``);
:mod:`snnlth.config_io` generates both from these fields, so this file is the single source of truth. Field metadata:
``help`` (flag help), ``semantic=False`` for fields that do not change results (paths, device, batch size used only
for evaluation) and are therefore left out of the run hash.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from snnlth.errors import ConfigError


def _f(default: Any, help: str, semantic: bool = True, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "semantic": semantic, "choices": choices})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _require(ok: bool, name: str, value: Any, rule: str, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{_flag(name)} {rule} (got {value!r}); {fix}")


def _check_choices(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        choices = f.metadata.get("choices")
        value = getattr(obj, f.name)
        if choices and value not in choices:
            raise ConfigError(f"{_flag(f.name)} must be one of {', '.join(choices)} (got {value!r})")


def _positive_or_none(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    _require(value is None or value >= 1, name, value, "must be a positive number of images",
             f"drop {_flag(name)} to use all images")


@dataclass(frozen=True)
class DataConfig:
    """What data to train and evaluate on."""

    dataset: str = _f("fmnist", "dataset name (fmnist, cifar10, cifar100)")
    data_dir: str | None = _f(None, "directory holding the dataset files (else $SNNLTH_DATA, then system dirs)",
                              semantic=False)
    train_subset: int | None = _f(None, "train on a stratified, seeded subset of N images")
    test_subset: int | None = _f(None, "evaluate on a stratified subset of N test images (default: all)")
    augment: bool = _f(True, "batched on-device augmentation (crop, flip, Cutout for CIFAR)")
    resize: int | None = _f(None, "resize images to this side length once at load (the paper uses 32 for F-MNIST)")

    def __post_init__(self) -> None:
        _positive_or_none(self, "train_subset")
        _positive_or_none(self, "test_subset")
        _require(self.resize is None or 8 <= self.resize <= 512, "resize", self.resize, "must be in [8, 512]",
                 "drop --resize to keep the native size")


@dataclass(frozen=True)
class ModelConfig:
    """Which network, and its spiking neurons."""

    model: str = _f("convnet", "architecture (convnet, lenet300, vgg16, resnet19)")
    neuron: str = _f("lif", "lif for the SNN, relu for its ANN twin", choices=("lif", "relu"))
    timesteps: int = _f(5, "number of timesteps T")
    tau: float = _f(4.0 / 3.0, "LIF membrane time constant (decay 1 - 1/tau per step)")
    v_threshold: float = _f(1.0, "LIF firing threshold")
    surrogate: str = _f("atan", "surrogate gradient (atan, sigmoid)")
    alpha: float = _f(2.0, "surrogate sharpness alpha")

    def __post_init__(self) -> None:
        _check_choices(self)
        _require(self.timesteps >= 1, "timesteps", self.timesteps, "must be >= 1", "use e.g. --timesteps 5")
        _require(self.tau > 1.0, "tau", self.tau, "must be > 1", "the paper uses --tau 1.3333")
        _require(self.v_threshold > 0, "v_threshold", self.v_threshold, "must be > 0", "the paper uses 1.0")
        _require(self.alpha > 0, "alpha", self.alpha, "must be > 0", "the paper uses 2.0")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, seed and device."""

    epochs: int = _f(5, "training epochs")
    batch_size: int = _f(128, "training batch size")
    lr: float = _f(0.1, "initial SGD learning rate (cosine-annealed to 0)")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(5e-4, "L2 weight decay (really applied, unlike the paper's code)")
    seed: int = _f(0, "random seed (init, data order, augmentation)")
    device: str = _f("auto", "auto, cpu or cuda", semantic=False, choices=("auto", "cpu", "cuda"))
    amp: bool = _f(False, "bf16 autocast (CUDA; LIF state stays fp32)")
    eval_batch_size: int = _f(256, "evaluation batch size", semantic=False)

    def __post_init__(self) -> None:
        _check_choices(self)
        _require(self.epochs >= 1, "epochs", self.epochs, "must be >= 1", "use e.g. --epochs 5")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1", "use e.g. --batch-size 128")
        _require(self.eval_batch_size >= 1, "eval_batch_size", self.eval_batch_size, "must be >= 1",
                 "use e.g. --eval-batch-size 1000")
        _require(self.lr > 0, "lr", self.lr, "must be > 0", "use e.g. --lr 0.1")
        _require(0 <= self.momentum < 1, "momentum", self.momentum, "must be in [0, 1)", "use 0.9")
        _require(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0", "use 5e-4")
        _require(self.seed >= 0, "seed", self.seed, "must be >= 0", "use e.g. --seed 0")


@dataclass(frozen=True)
class TrainRunConfig:
    """Everything ``snnlth train`` needs. Sections map to TOML tables ``[data]``, ``[model]``, ``[train]``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
