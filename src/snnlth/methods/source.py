"""``--from RUN_DIR``: the finished search a baseline reuses (its masks, its conditions), checked before anything is
written. What must match is declared by each method (:class:`snnlth.methods.registry.MethodSpec`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from snnlth import masks as M
from snnlth.config import SearchRunConfig, flag_name
from snnlth.config_io import config_to_dict
from snnlth.errors import ConfigError
from snnlth.methods.kit import Sizes
from snnlth.methods.registry import MethodSpec
from snnlth.rundir.store import RunStore


def check_source(cfg: SearchRunConfig, spec: MethodSpec) -> RunStore | None:
    """The ``--from`` run of ``cfg``: a finished search of the same model and dataset, of a method ``spec`` accepts,
    trained under the conditions ``spec`` says must match; a one-line :class:`ConfigError` naming the first
    mismatch otherwise."""
    if not cfg.search.from_run:
        return None
    src = RunStore(Path(cfg.search.from_run))
    if not src.is_finished():
        raise ConfigError(f"--from {src.path} is not a finished search run (no config.json/summary.json there); "
                          "point it at the seed_<s> directory of a finished `snnlth search`")
    saved = src.read_config()
    if saved.get("kind") != "search":
        raise ConfigError(f"--from {src.path} holds a {saved.get('kind')} run, not a search; use a search run dir")
    theirs = (saved["model"]["model"], saved["data"]["dataset"])
    mine = (cfg.model.model, cfg.data.dataset)
    if theirs != mine:
        raise ConfigError(f"--from {src.path} has masks for model {theirs[0]} on {theirs[1]}, not {mine[0]} on "
                          f"{mine[1]}; use a run of the same model and dataset")
    method = saved.get("search", {}).get("method")
    if spec.source_methods and method not in spec.source_methods:
        raise ConfigError(f"--from {src.path} is a {method} run; --method {spec.name} takes a run of "
                          f"{' or '.join(spec.source_methods)}")
    _check_same_conditions(cfg, spec, saved, src.path)
    if spec.check_source is not None:
        spec.check_source(cfg, saved, src.path)
    return src


def _check_same_conditions(cfg: SearchRunConfig, spec: MethodSpec, saved: dict, where: Path) -> None:
    mine = config_to_dict(cfg)
    for section, key in spec.same_as_source:
        theirs, ours = saved.get(section, {}).get(key, _legacy(cfg, section, key)), mine[section][key]
        if isinstance(ours, tuple):
            ours = list(ours)
        if theirs != ours:
            flag = flag_name(key)
            raise ConfigError(f"--from {where} was trained with {flag} {theirs}, this {spec.name} run with {ours}; "
                              f"a baseline must match its source: use {flag} {theirs}")


def _legacy(cfg: SearchRunConfig, section: str, key: str):
    """The value a source written before ``key`` existed used: the field's identity default."""
    f = next(f for f in dataclasses.fields(getattr(cfg, section)) if f.name == key)
    return f.metadata.get("identity_default", f.default)


def source_masks(src: RunStore, key: str, sizes: Sizes) -> M.Masks:
    """Masks ``key`` of the source run, checked against this model's prunable tensors (``sizes``)."""
    masks = src.load_masks(key)
    if masks is None:
        raise ConfigError(f"--from {src.path} lacks masks/{key}.pt; the source run is incomplete")
    names = list(sizes.names)
    bad = [n for n in masks if n not in sizes.shapes or tuple(sizes.shapes[n]) != tuple(masks[n].shape)]
    if bad:
        raise ConfigError(f"--from {src.path}: its masks do not fit this model ({bad[0]}); use a run of the same "
                          "architecture and input size")
    if set(masks) != set(names):
        other = sorted(set(masks) ^ set(names))[0]
        raise ConfigError(f"--from {src.path} pruned another set of tensors ({other}); use the source's --exclude")
    return {n: masks[n] for n in names}
