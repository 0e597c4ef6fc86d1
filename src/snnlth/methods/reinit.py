"""The random re-initialisation baseline (method ``reinit``): the masks of a finished search (``--from``), trained
from a fresh random init instead of the ticket's own (``--reinit-levels`` says which). Its levels have no search
time of their own (``search_seconds`` is None)."""

from __future__ import annotations

from snnlth.config import SearchConfig, SearchRunConfig
from snnlth.errors import ConfigError
from snnlth.methods.kit import MethodKit
from snnlth.methods.levels import resolve_retrain_rounds
from snnlth.methods.registry import MethodResult, MethodSpec, register_method
from snnlth.methods.source import source_masks
from snnlth.rng import REINIT_SEED_OFFSET, STREAM
from snnlth.rundir.store import RunStore


def run_reinit(kit: MethodKit, source: RunStore | None) -> MethodResult:
    cfg = kit.cfg
    src_levels = source.read_summary()["levels"]
    chosen = sorted(resolve_retrain_rounds(cfg.search.reinit_levels, [lv["sparsity_prunable"] for lv in src_levels],
                                           "--reinit-levels"))
    kit.model.reinitialize(cfg.train.seed + REINIT_SEED_OFFSET)  # a fresh init, not the source's
    fresh = kit.init()
    levels = []
    for j in chosen:
        lv = src_levels[j]
        key = lv.get("masks") or (f"round_{lv['round']:02d}" if lv["round"] is not None else f"eb_{j}")
        masks = kit.masks(f"level_{j:02d}", lambda key=key: source_masks(source, key, kit.sizes))
        kit.event(f"reinit: the {lv['sparsity_prunable']:.2%}-sparse mask from a fresh init, {cfg.train.epochs} epochs")
        trained = kit.train(f"reinit_{j:02d}", fresh, masks, stream=STREAM.reinit(j), round=lv["round"], retrain=True)
        levels.append(trained.level(f"level_{j:02d}", masks, round=lv["round"], spent=None))
    return MethodResult(levels)


def check_reinit(cfg: SearchRunConfig) -> None:
    """reinit took its levels from ``--retrain-at`` before 0.4: that flag now belongs to Early-Time and round stop,
    and silently ignoring it would train other levels than asked."""
    if tuple(cfg.search.retrain_at) != SearchConfig().retrain_at:
        raise ConfigError(f"--retrain-at is Early-Time's and round stop's; reinit takes --reinit-levels (got "
                          f"--retrain-at {' '.join(cfg.search.retrain_at)}): use --reinit-levels "
                          f"{' '.join(cfg.search.retrain_at)}")


register_method(MethodSpec(
    "reinit", "reinit", run_reinit, "baseline: the masks of --from trained from a fresh random init",
    fields=("reinit_levels",), source="required", check=check_reinit))
