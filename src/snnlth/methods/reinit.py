"""The random re-initialisation baseline (method ``reinit``): the masks of a finished search (``--from``), trained
from a fresh random init instead of the ticket's own. Its levels have no search time of their own (``search_seconds`` is None)."""

from __future__ import annotations

from snnlth.methods.base import Phase, SearchContext
from snnlth.methods.levels import LevelSpec, level_entry, resolve_retrain_rounds
from snnlth.methods.registry import MethodResult, MethodSpec, register_method
from snnlth.methods.source import source_masks
from snnlth.rng import REINIT_SEED_OFFSET, STREAM
from snnlth.rundir.store import RunStore


def run_reinit(ctx: SearchContext, source: RunStore | None) -> MethodResult:
    cfg = ctx.cfg
    full_t, epochs = cfg.model.timesteps, cfg.train.epochs
    src_levels = source.read_summary()["levels"]
    chosen = sorted(resolve_retrain_rounds(cfg.search.retrain_at, [lv["sparsity_prunable"] for lv in src_levels]))
    model = ctx.new_model()
    model.reinitialize(cfg.train.seed + REINIT_SEED_OFFSET)  # a fresh init, not the source's
    fresh = ctx.save_state_once("init", model)
    names = ctx.prunable_names(model)
    levels = []
    for j in chosen:
        lv = src_levels[j]
        key = lv.get("masks") or (f"round_{lv['round']:02d}" if lv["round"] is not None else f"eb_{j}")
        masks = source_masks(source, key, ctx, names)
        ctx.save_masks(f"level_{j:02d}", masks)
        ctx.event(f"reinit: the {lv['sparsity_prunable']:.2%}-sparse mask from a fresh init, {epochs} epochs")
        phase = ctx.run_phase(model, Phase(f"reinit_{j:02d}", fresh, masks, full_t, epochs, stream=STREAM.reinit(j),
                                           tags={**ctx.level_tags(lv["round"], masks), "retrain": True}))
        spec = LevelSpec(lv["round"], masks, f"level_{j:02d}", phase, full_t, None, final=True)
        levels.append(level_entry(ctx, spec))
    return MethodResult(levels)


register_method(MethodSpec(
    "reinit", "reinit", run_reinit, "baseline: the masks of --from trained from a fresh random init",
    fields=("retrain_at",), source="required"))
