"""The transferred ticket, a side study of the paper (method ``transfer``): IMP on the ANN twin (ReLU in place of
LIF, the same parameters), then each of its masks trained as the SNN from the same init. One final SNN level per
IMP round; the ANN's own accuracies are in ``summary["transfer"]["ann_levels"]``. Search time of a ticket: the ANN
training before it (the SNN never searches)."""

from __future__ import annotations

import dataclasses

from snnlth.methods.base import Phase, SearchContext, Spent
from snnlth.methods.imp import magnitude_rule, run_rounds
from snnlth.methods.levels import LevelSpec, level_entry
from snnlth.methods.registry import MethodResult, MethodSpec, register_method
from snnlth.rng import STREAM
from snnlth.rundir.store import RunStore


def run_transfer(ctx: SearchContext, source: RunStore | None = None) -> MethodResult:
    assert ctx.twin is not None  # needs_twin: checked before the run directory is written
    ann = dataclasses.replace(ctx, build=ctx.twin)  # same store, same metrics rows; the ANN's phases: round_XX
    ann_levels, _, _ = run_rounds(ann, magnitude_rule(ann))
    init = ctx.load_state("init")  # the ANN's init is the SNN's: the twin has the same parameters, drawn alike
    model = ctx.new_model()
    t, epochs = ctx.cfg.model.timesteps, ctx.cfg.train.epochs
    levels = []
    for lv in ann_levels:
        k, masks = lv["round"], ctx.load_masks(lv["masks"])
        ctx.event(f"training the ANN's round-{k} ticket as the SNN ({lv['sparsity_prunable']:.2%} pruned), T={t}")
        phase = ctx.run_phase(model, Phase(f"snn_{k:02d}", init, masks, t, epochs, stream=STREAM.retrain(k),
                                           tags={**ctx.level_tags(k, masks), "retrain": True}))
        spent = Spent(lv["search_seconds"], lv["search_eval_seconds"], lv["search_wall_seconds"])
        levels.append(level_entry(ctx, LevelSpec(k, masks, lv["masks"], phase, t, spent, final=True)))
    keep = ("round", "sparsity_prunable", "test_accuracy", "search_seconds")
    return MethodResult(levels, extra={"transfer": {"ann_levels": [{k: lv[k] for k in keep} for lv in ann_levels]}})


register_method(MethodSpec(
    "transfer", "transfer", run_transfer, "side study: IMP on the ANN twin, its masks and init trained as the SNN",
    fields=("rounds", "prune_rate", "scope", "rewind_epoch"), needs_twin=True))
