"""The transferred ticket, a side study of the paper (method ``transfer``): IMP on the ANN twin (ReLU in place of
LIF, the same parameters), then each of its masks trained as the SNN from the same init. One final SNN level per
IMP round; the ANN's own accuracies are in ``summary["transfer"]["ann_levels"]``. Search time of a ticket: the ANN
training before it (the SNN never searches)."""

from __future__ import annotations

from snnlth.methods.kit import MethodKit
from snnlth.methods.phases import Spent
from snnlth.methods.registry import MethodResult, MethodSpec, register_method
from snnlth.methods.rounds import magnitude_rule, run_rounds
from snnlth.rng import STREAM
from snnlth.rundir.store import RunStore


def run_transfer(kit: MethodKit, source: RunStore | None = None) -> MethodResult:
    ann = kit.twin()  # same store, same metrics log; the ANN's phases: round_XX
    ann_levels = run_rounds(ann, magnitude_rule(ann)).levels
    init = kit.store.load_state("init")  # the ANN's init is the SNN's: the twin has the same parameters, drawn alike
    t = kit.cfg.model.timesteps
    levels = []
    for lv in ann_levels:
        k, masks = lv["round"], kit.store.load_masks(lv["masks"])
        kit.event(f"training the ANN's round-{k} ticket as the SNN ({lv['sparsity_prunable']:.2%} pruned), T={t}")
        snn = kit.train(f"snn_{k:02d}", init, masks, stream=STREAM.retrain(k), round=k, retrain=True)
        spent = Spent(lv["search_seconds"], lv["search_eval_seconds"], lv["search_wall_seconds"])
        levels.append(snn.level(lv["masks"], masks, round=k, spent=spent))
    keep = ("round", "sparsity_prunable", "test_accuracy", "search_seconds")
    return MethodResult(levels, extra={"transfer": {"ann_levels": [{k: lv[k] for k in keep} for lv in ann_levels]}})


register_method(MethodSpec(
    "transfer", "transfer", run_transfer, "side study: IMP on the ANN twin, its masks and init trained as the SNN",
    fields=("rounds", "prune_rate", "scope", "rewind_epoch"), needs_twin=True))
