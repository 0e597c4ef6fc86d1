"""One-shot tickets, the paper's side studies (methods ``snip`` and ``oneshot``): a single score per weight, masks
of exactly IMP's ticket sizes (``--rounds`` at ``--prune-rate``, IMP's arithmetic) drawn from it, each ticket trained
from init. One level per ticket size, all final.

- ``snip`` (Lee et al. 2019): connection sensitivity ``|g · w|`` at initialisation, from the loss gradient of one
  training batch; ``--neuron relu`` gives SNIP on the ANN twin. Search time: the score's forward/backward.
- ``oneshot``: ``|w|`` after the dense network is trained at ``--t-pre`` timesteps, tickets retrained at ``--t-post``
  (the paper's study of pruning with another T: T_pre ≥ 3 is as good as 5). Search time: that dense training.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from snnlth import masks as M
from snnlth.methods.kit import MethodKit, ensure_finite
from snnlth.methods.phases import Spent
from snnlth.methods.registry import MethodResult, MethodSpec, register_method
from snnlth.rng import STREAM
from snnlth.rundir.store import RunStore

# (kit, init state, whether masks are still to be drawn) -> (scores or None, spent, info)
Scores = Callable[[MethodKit, dict, bool], tuple[M.Weights | None, Spent, dict]]
SCORE_RECORD = "one_shot"  # the score's description and time, stored once: a resumed run reuses them


def snip_scores(kit: MethodKit, init: dict, needed: bool) -> tuple[M.Weights | None, Spent, dict]:
    """|g · w| at init on the first training batch of the score stream, in train mode, at full T. Its time (the
    device synchronised) is stored with the run; once every mask is drawn a resumed run does not score again."""
    if not needed and kit.store.has_record(SCORE_RECORD):
        info = kit.record(SCORE_RECORD, dict)
        return None, Spent(info["seconds"], 0.0, info["seconds"]), info
    cfg, model = kit.cfg, kit.model
    _synchronize(kit.device)
    start = time.perf_counter()
    model.load_state_dict(init)
    model.train()
    x, y = next(iter(kit.data.train_batches(cfg.train.batch_size, cfg.train.seed, STREAM.one_shot(0), 0)))
    model.zero_grad(set_to_none=True)
    kit.loss(model(x, cfg.model.timesteps), y).backward()  # the gradient of the run's own loss
    params = dict(model.named_parameters())
    scores = {n: (params[n].grad * params[n]).detach().abs() for n in kit.sizes.names}
    model.zero_grad(set_to_none=True)
    model.load_state_dict(init)  # the forward in train mode moved BatchNorm's running statistics
    _synchronize(kit.device)
    seconds = time.perf_counter() - start
    # a run killed after its first score keeps that score's time: the masks drawn then are the ones it keeps
    info = kit.record(SCORE_RECORD, lambda: {"score": "snip", "batch": int(len(y)), "seconds": seconds})
    return scores, Spent(info["seconds"], 0.0, info["seconds"]), info


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trained_magnitudes(kit: MethodKit, init: dict, needed: bool) -> tuple[M.Weights, Spent, dict]:
    """|w| after the dense network is trained for E epochs at T_pre (a finished dense phase is loaded, not rerun)."""
    t_pre = kit.cfg.search.t_pre or kit.cfg.model.timesteps
    kit.event(f"dense training at T_pre={t_pre}, {kit.cfg.train.epochs} epochs")
    dense = kit.train("dense", init, None, stream=STREAM.one_shot(0), timesteps=t_pre, round=0,
                      tags={"t_pre": t_pre})
    weights = dense.weights()
    ensure_finite(weights, "one-shot pruning", "after the dense training ")
    info = {"score": "magnitude", "t_pre": t_pre, "dense_test_accuracy": dense.test_accuracy}
    return {n: w.abs() for n, w in weights.items()}, dense.spent, info


def run_one_shot(kit: MethodKit, scores: Scores, t_train: int) -> MethodResult:
    s = kit.cfg.search
    init = kit.init()
    targets = kit.sizes.imp_survivors(s.prune_rate, s.rounds, s.scope)[1:]
    keys = [f"one_shot_{k:02d}" for k in range(1, len(targets) + 1)]
    missing = [(key, keep) for key, keep in zip(keys, targets) if kit.store.load_masks(key) is None]
    score, spent, info = scores(kit, init, bool(missing))  # on resume: a finished dense phase is loaded, not rerun
    for key, keep in missing:
        kit.store.save_masks(key, M.mask_with_survivors(score, keep))
    levels = []
    for k, key in enumerate(keys, start=1):
        masks = kit.store.load_masks(key)
        kit.event(f"training the one-shot ticket {k}/{len(keys)} ({M.sparsity(masks):.2%} pruned) at T={t_train}")
        ticket = kit.train(f"ticket_{k:02d}", init, masks, stream=STREAM.one_shot(k), timesteps=t_train, round=k)
        levels.append(ticket.level(key, masks, round=k, spent=spent))
    return MethodResult(levels, extra={"one_shot": info})


def run_snip(kit: MethodKit, source: RunStore | None = None) -> MethodResult:
    return run_one_shot(kit, snip_scores, kit.cfg.model.timesteps)


def run_oneshot(kit: MethodKit, source: RunStore | None = None) -> MethodResult:
    return run_one_shot(kit, trained_magnitudes, kit.cfg.search.t_post or kit.cfg.model.timesteps)


register_method(MethodSpec(
    "snip", "SNIP", run_snip, "side study: SNIP connection sensitivity |g·w| at init, one shot at IMP's ticket sizes",
    fields=("rounds", "prune_rate", "scope")))
register_method(MethodSpec(
    "oneshot", "one-shot", run_oneshot, "side study: magnitude pruning once after dense training at --t-pre, "
    "tickets retrained at --t-post, at IMP's ticket sizes",
    fields=("rounds", "prune_rate", "scope", "t_pre", "t_post")))
