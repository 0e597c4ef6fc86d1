"""A recipe given in Python: an optimiser factory and a loss as callables (the ``optimizer=`` / ``loss=`` keywords of
``find_ticket``, ``search`` and ``train``), in place of ``--optimizer`` / ``--loss``.

A callable is part of the run's identity under a name that changes when it does: ``python:<module.qualname>@<hash>``,
the hash over its source code, its default arguments and the plain values (numbers, strings) it closes over; or
``python:<recipe_name>`` when the caller names it. A changed callable therefore never resumes an old run, and a run
named by a callable is resumed only with a callable again.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from snnlth.config import PYTHON_RECIPE, TrainConfig
from snnlth.engine.evaluate import LOSSES
from snnlth.errors import ConfigError

OptimizerFactory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (out_seq [T, B, C], y [B]) -> scalar
_PLAIN = (int, float, str, bool, type(None))


@dataclass(frozen=True)
class Recipe:
    """The callables of a run: ``optimizer(params) -> Optimizer`` and ``loss(out_seq, y) -> scalar``; None: the
    config's ``--optimizer`` / ``--loss``."""

    optimizer: OptimizerFactory | None = None
    loss: LossFn | None = None

    def loss_fn(self, cfg: TrainConfig) -> LossFn:
        """The run's loss: the callable, or ``--loss`` by name."""
        if self.loss is not None:
            return self.loss
        need_named("loss", cfg.loss)
        return LOSSES[cfg.loss]


def need_named(key: str, value: str) -> None:
    if value.startswith(PYTHON_RECIPE):
        raise ConfigError(f"this run's {key} is the Python callable {value[len(PYTHON_RECIPE):]}; pass {key}=<that "
                          "callable> to snnlth.find_ticket / snnlth.search / snnlth.train to run or resume it (the "
                          "CLI and config files take only the named choices)")


def check_recipe(cfg: TrainConfig, recipe: Recipe) -> None:
    """A config naming a Python callable needs that callable (checked before a run writes anything)."""
    if recipe.optimizer is None:
        need_named("optimizer", cfg.optimizer)
    if recipe.loss is None:
        need_named("loss", cfg.loss)


def callable_name(fn: Callable, recipe_name: str | None = None) -> str:
    """``python:<recipe_name>``, or ``python:<module.qualname>@<12 hex digits>`` hashed over what ``fn`` computes
    with (see the module docstring). A callable whose source cannot be read needs ``recipe_name``."""
    if not callable(fn):
        raise ConfigError(f"optimizer= and loss= take a name or a callable (got {type(fn).__name__}); e.g. "
                          "optimizer=lambda params: torch.optim.Adam(params, lr=1e-3)")
    if recipe_name is not None:
        return PYTHON_RECIPE + recipe_name
    digest = hashlib.sha256()
    _hash_callable(digest, fn)
    inner = fn.func if isinstance(fn, functools.partial) else fn
    name = f"{getattr(inner, '__module__', '?')}.{getattr(inner, '__qualname__', type(inner).__name__)}"
    return f"{PYTHON_RECIPE}{name}@{digest.hexdigest()[:12]}"


def _hash_callable(digest, fn: Callable) -> None:
    if isinstance(fn, functools.partial):  # functools.partial(torch.optim.Adam, lr=1e-3): the function and its args
        _hash_callable(digest, fn.func)
        digest.update(repr((fn.args, sorted(fn.keywords.items()))).encode())
        return
    try:
        digest.update(inspect.getsource(fn).encode())
    except (OSError, TypeError):
        raise ConfigError(f"the source of {getattr(fn, '__qualname__', fn)!r} cannot be read (defined in an "
                          "interactive session, or built in), so a changed version could not be told from it; pass "
                          "recipe_name='...' to name this recipe yourself") from None
    code = getattr(fn, "__code__", None)
    digest.update(repr((getattr(fn, "__defaults__", None), getattr(fn, "__kwdefaults__", None))).encode())
    for cell_name, cell in zip(getattr(code, "co_freevars", ()), getattr(fn, "__closure__", None) or ()):
        value = cell.cell_contents
        if isinstance(value, _PLAIN) or (isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value)):
            digest.update(f"{cell_name}={value!r}".encode())


def make_custom_optimizer(factory: OptimizerFactory, params: list[torch.nn.Parameter],
                          lr_scale: float) -> torch.optim.Optimizer:
    """``factory(params)``, checked; every group's learning rate times ``lr_scale`` (a phase's lr factor)."""
    optimizer = factory(params)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"optimizer= must return a torch.optim.Optimizer (got {type(optimizer).__name__}); e.g. "
                          "optimizer=lambda params: torch.optim.Adam(params, lr=1e-3)")
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * lr_scale
    return optimizer


def with_recipe(cfg: TrainConfig, optimizer: str | OptimizerFactory | None = None, loss: str | LossFn | None = None,
                recipe_name: str | None = None) -> tuple[TrainConfig, Recipe]:
    """``cfg`` with ``optimizer`` / ``loss`` in it (a choice by name, or a callable under :func:`callable_name`),
    and the callables as a :class:`Recipe`. ``recipe_name`` without a callable is an error."""
    changes: dict[str, str] = {}
    for key, value in (("optimizer", optimizer), ("loss", loss)):
        if value is not None:
            changes[key] = value if isinstance(value, str) else callable_name(value, recipe_name)
    if recipe_name is not None and not any(callable(v) for v in (optimizer, loss)):
        raise ConfigError("recipe_name= names a Python recipe: give it with optimizer=<callable> and/or "
                          "loss=<callable>, or leave it out")
    return (dataclasses.replace(cfg, **changes) if changes else cfg,
            Recipe(optimizer if callable(optimizer) else None, loss if callable(loss) else None))
