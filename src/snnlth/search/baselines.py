"""Baselines that reuse a finished search (``--from RUN_DIR``): ``reinit`` trains its masks from a fresh random
init; ``random`` with ``--from`` prunes at random with the same per-layer counts as its masks."""

from __future__ import annotations

from pathlib import Path

from snnlth import masks as M
from snnlth.config import SearchRunConfig, flag_name
from snnlth.config_io import config_to_dict
from snnlth.errors import ConfigError
from snnlth.rng import REINIT_SEED_OFFSET, STREAM
from snnlth.rundir.atomic import read_json
from snnlth.rundir.layout import RunDir
from snnlth.rundir.store import load_blob
from snnlth.search.base import Phase, SearchContext, Spent
from snnlth.search.levels import LevelSpec, level_entry, resolve_retrain_rounds


def check_source(cfg: SearchRunConfig) -> RunDir | None:
    """Validate ``--from`` before anything is written: a finished search of the same model and dataset."""
    if not cfg.search.from_run:
        return None
    src = RunDir(Path(cfg.search.from_run))
    if not src.config.exists() or not src.summary.exists():
        raise ConfigError(f"--from {src.path} is not a finished search run (no config.json/summary.json there); "
                          "point it at the seed_<s> directory of a finished `snnlth search`")
    saved = read_json(src.config)
    if saved.get("kind") != "search":
        raise ConfigError(f"--from {src.path} holds a {saved.get('kind')} run, not a search; use a search run dir")
    theirs = (saved["model"]["model"], saved["data"]["dataset"])
    mine = (cfg.model.model, cfg.data.dataset)
    if theirs != mine:
        raise ConfigError(f"--from {src.path} has masks for model {theirs[0]} on {theirs[1]}, not {mine[0]} on "
                          f"{mine[1]}; use a run of the same model and dataset")
    _check_same_conditions(cfg, saved, src.path)
    if cfg.search.method == "random":
        rounds = saved.get("search", {}).get("rounds")
        if saved.get("search", {}).get("method") not in ("imp", "random") or (rounds or 0) < cfg.search.rounds:
            raise ConfigError(f"--from {src.path} has no round masks for rounds 1..{cfg.search.rounds}; "
                              "use an imp run with at least as many rounds")
    return src


# A baseline is only comparable with its source when it trains under the same conditions.
SAME_AS_SOURCE = (("model", "timesteps"), ("train", "epochs"), ("search", "rewind_epoch"), ("data", "train_subset"),
                  ("data", "test_subset"), ("data", "resize"), ("search", "prune_rate"), ("search", "scope"),
                  ("data", "augment"), ("model", "neuron"), ("train", "lr"), ("train", "batch_size"),
                  ("train", "momentum"), ("train", "weight_decay"))


def _check_same_conditions(cfg: SearchRunConfig, saved: dict, where: Path) -> None:
    mine = config_to_dict(cfg)
    for section, key in SAME_AS_SOURCE:
        theirs, ours = saved.get(section, {}).get(key), mine[section][key]
        if isinstance(ours, tuple):
            ours = list(ours)
        if theirs != ours:
            flag = flag_name(key)
            raise ConfigError(f"--from {where} was trained with {flag} {theirs}, this {cfg.search.method} run with "
                              f"{ours}; a baseline must match its source: use {flag} {theirs}")


def source_masks(src: RunDir, key: str, ctx: SearchContext, names: list[str]) -> M.Masks:
    """Masks ``key`` of the source run, checked against this model's prunable tensors."""
    path = src.path / "masks" / f"{key}.pt"
    if not path.exists():
        raise ConfigError(f"--from {src.path} lacks masks/{key}.pt; the source run is incomplete")
    masks = M.unpack(load_blob(path))
    params = dict(ctx.shape_model().named_parameters())
    bad = [n for n in masks if n not in params or tuple(params[n].shape) != tuple(masks[n].shape)]
    if bad or set(names) - set(masks):
        raise ConfigError(f"--from {src.path}: its masks do not fit this model ({(bad or sorted(set(names)))[0]}); "
                          "use a run of the same architecture and input size")
    return masks


def run_reinit(ctx: SearchContext, src: RunDir) -> list[dict]:
    cfg = ctx.cfg
    full_t, epochs = cfg.model.timesteps, cfg.train.epochs
    src_levels = read_json(src.summary)["levels"]
    chosen = sorted(resolve_retrain_rounds(cfg.search.retrain_at, [lv["sparsity_prunable"] for lv in src_levels]))
    model = ctx.new_model(seed_offset=REINIT_SEED_OFFSET)
    fresh = ctx.save_state_once("init", model)
    names = ctx.prunable_names(model)
    levels = []
    for j in chosen:
        lv = src_levels[j]
        key = lv.get("masks") or (f"round_{lv['round']:02d}" if lv["round"] is not None else f"eb_{j}")
        masks = source_masks(src, key, ctx, names)
        ctx.save_masks(f"level_{j:02d}", masks)
        ctx.event(f"reinit: the {lv['sparsity_prunable']:.2%}-sparse mask from a fresh init, {epochs} epochs")
        phase = ctx.run_phase(model, Phase(f"reinit_{j:02d}", fresh, masks, full_t, epochs, stream=STREAM.reinit(j),
                                           tags={**ctx.level_tags(lv["round"], masks), "retrain": True}))
        # the masks come from --from: this run spends no search time of its own
        levels.append(level_entry(ctx, LevelSpec(lv["round"], masks, f"level_{j:02d}", phase, full_t, Spent(), True)))
    return levels
