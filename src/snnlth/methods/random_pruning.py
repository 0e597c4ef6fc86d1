"""The random-pruning baseline (method ``random``): IMP's rounds with masks drawn at random instead of by magnitude,
at the same per-round rate; with ``--from`` an IMP run, the same number of survivors in every layer as its masks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from snnlth import masks as M
from snnlth.config import SearchRunConfig
from snnlth.errors import ConfigError
from snnlth.methods.kit import MethodKit
from snnlth.methods.registry import MethodResult, MethodSpec, register_method
from snnlth.methods.rounds import PruneFn, run_rounds
from snnlth.methods.source import source_masks
from snnlth.rng import RANDOM_PRUNE_STRIDE
from snnlth.rundir.store import RunStore


def random_rule(kit: MethodKit, reference: Callable[[int], M.Masks] | None = None) -> PruneFn:
    """Random pruning at the same per-round rate; with ``reference``, the same per-layer counts as its round-k masks."""
    s, seed = kit.cfg.search, kit.cfg.train.seed

    def rule(k: int, _weights: M.Weights, masks: M.Masks) -> M.Masks:
        gen = torch.Generator().manual_seed(seed * RANDOM_PRUNE_STRIDE + k)
        return M.random_like(reference(k), gen) if reference else M.random_prune(masks, s.prune_rate, gen, s.scope)

    return rule


def run_random(kit: MethodKit, source: RunStore | None = None) -> MethodResult:
    reference = None
    if source is not None:
        prefix = "gmp" if source.read_config()["search"]["method"] == "gmp" else "round"  # gmp keeps every level
        reference = lambda k: source_masks(source, f"{prefix}_{k:02d}", kit.sizes)  # noqa: E731
    return MethodResult.of_rounds(run_rounds(kit, random_rule(kit, reference)))


def _enough_rounds(cfg: SearchRunConfig, saved: dict, where: Path) -> None:
    rounds = saved.get("search", {}).get("rounds") or 0
    if rounds < cfg.search.rounds:
        raise ConfigError(f"--from {where} has no round masks for rounds 1..{cfg.search.rounds}; "
                          "use an imp or gmp run with at least as many rounds")


register_method(MethodSpec(
    "random", "random", run_random, "baseline: IMP's rounds with random masks (per-layer counts of --from)",
    fields=("rounds", "prune_rate", "scope", "rewind_epoch"), source="optional",
    source_methods=("imp", "random", "gmp"),
    check_source=_enough_rounds))
