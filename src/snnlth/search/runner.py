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
    cfg = ctx.cfg
    model = ctx.shape_model()
    retrain = sum(r["train_seconds"] + r["eval_seconds"] for r in ctx.rows if r.get("retrain"))
    work = sum(r["train_seconds"] + r["eval_seconds"] for r in ctx.rows) + selection_seconds
    return {
        "method": cfg.search.method,
        "timesteps": cfg.model.timesteps,
        "seed": cfg.train.seed,
        "early_time": early_time,
        "eb": eb,
        "levels": levels,
        "search_seconds_total": max((lv["search_seconds"] for lv in levels), default=0.0),
        "retrain_seconds_total": retrain,
        "total_seconds": work,
        "model": cfg.model.model,
        "dataset": cfg.data.dataset,
        "device": str(ctx.device),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "num_prunable": sum(p.numel() for n, p in model.named_parameters() if n in set(model.prunable_names())),
        "from_run": cfg.search.from_run,
        "config": config_to_dict(cfg),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
