"""Dispatch a search method and assemble ``summary.json`` (its keys are a contract: extend, never rename)."""

from __future__ import annotations

import time

from snnlth.config_io import config_to_dict
from snnlth.rundir.layout import RunDir
from snnlth.search.base import SearchContext
from snnlth.search.baselines import run_reinit, source_masks
from snnlth.search.early_bird import run_early_bird
from snnlth.search.imp import magnitude_rule, random_rule, run_rounds


def run_search(ctx: SearchContext, src: RunDir | None) -> dict:
    s = ctx.cfg.search
    eb, plan = None, None
    if s.method == "imp":
        levels, plan = run_rounds(ctx, magnitude_rule(ctx))
    elif s.method == "random":
        reference = None
        if src is not None:
            names = ctx.prunable_names(ctx.shape_model())
            reference = lambda k: source_masks(src, f"round_{k:02d}", ctx, names)  # noqa: E731
        levels, plan = run_rounds(ctx, random_rule(ctx, reference))
    elif s.method == "eb":
        levels, plan, eb = run_early_bird(ctx)
    else:
        levels = run_reinit(ctx, src)
    return summarize(ctx, levels, plan.info if plan else None, eb, plan.selection_seconds if plan else 0.0)


def summarize(ctx: SearchContext, levels: list[dict], early_time: dict | None, eb: list[dict] | None,
              selection_seconds: float) -> dict:
    """``search_seconds_total``: training time of the search to its sparsest ticket, as the paper counts it;
    ``search_wall_seconds``: the wall clock of that search; ``eval_seconds``, ``train_seconds``, ``total_seconds``:
    every evaluation, every training, and the whole run's wall clock (all phases and the Early-Time selection)."""
    cfg = ctx.cfg
    model = ctx.shape_model()
    return {
        "method": cfg.search.method,
        "timesteps": cfg.model.timesteps,
        "seed": cfg.train.seed,
        "early_time": early_time,
        "eb": eb,
        "levels": levels,
        "search_seconds_total": max((lv["search_seconds"] for lv in levels), default=0.0),
        "search_wall_seconds": max((lv["search_wall_seconds"] for lv in levels), default=0.0),
        "retrain_seconds_total": sum(r["train_seconds"] for r in ctx.rows if r.get("retrain")),
        "train_seconds": sum(r["train_seconds"] for r in ctx.rows),
        "eval_seconds": sum(r["eval_seconds"] for r in ctx.rows),
        "total_seconds": sum(r["wall_seconds"] for r in ctx.rows) + selection_seconds,
        "model": cfg.model.model,
        "dataset": cfg.data.dataset,
        "device": str(ctx.device),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "num_prunable": sum(p.numel() for n, p in model.named_parameters() if n in set(model.prunable_names())),
        "from_run": cfg.search.from_run,
        "config": config_to_dict(cfg),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
