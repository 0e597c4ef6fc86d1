"""A ticket at the paper's highest sparsity for a quarter of IMP's search time? IMP, IMP+ET, EB, EB+ET and the fast
searches (GMP, GMP+ET, LRR, LRR+ET, IMP+ET+SS) on Fashion-MNIST (convnet, T=5), the paper's schedule of 25 % per
round for 14 rounds (98.22 % of the prunable weights), the same seeds, images and rewind state for every method.

    .venv/bin/python bench/fast_search.py [--quick] [--seeds N] --out F.json [--runs DIR] [--report DIR]

Prints the Table-1 layout (mean ± std over seeds; † marks search-path points), the time ratio to IMP at every level
(search time as the paper counts it: training only; and with the final ticket's training included), then the goal
per method: at IMP's sparsest level, search time <= 0.25x IMP's with a final ticket <= 1 point below IMP's, as
``holds`` or ``FAILS`` with the numbers. The methods other than IMP and IMP+ET train their tickets only at three of
IMP's levels (rounds 5, 10, 14: 76.27, 94.37, 98.22 %), which keeps the full run near an hour on 2 CPU cores.
Runs are ordinary resumable searches (rerunning skips what is finished); the method order is rotated per seed.

JSON (``--out``): ``top_sparsity`` (fraction of all parameters at IMP's sparsest level), ``methods[label].levels[i]``
with ``sparsity`` (of all parameters), ``sparsity_prunable``, ``pruned_weights``, ``final``, ``accuracy_mean``,
``accuracy_std``, ``search_seconds_mean``, ``search_seconds_std``; ``time_ratios[label][sparsity %]`` (``search``,
``with_final_training``); ``goal[label]`` (``time_ratio_top``, ``accuracy_gap_top``, ``holds``); ``best``
(``label``, ``time_ratio_top``, ``accuracy_gap_top``: the fastest method within 1 point of IMP at the top level;
all None if there is none); ``table_text``, ``time_ratio_text``, ``goal_text`` as printed; ``preset``, ``machine``,
``run_order``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from claims import final_train_seconds, level_rows, machine, ratio  # noqa: E402

from snnlth.api import search  # noqa: E402
from snnlth.config import DataConfig, ModelConfig, RuntimeConfig, SearchConfig, SearchRunConfig, TrainConfig  # noqa: E402
from snnlth.methods.kit import Sizes  # noqa: E402
from snnlth.models.catalog import create_model  # noqa: E402
from snnlth.report.aggregate import Point, curves  # noqa: E402
from snnlth.report.collect import load_runs  # noqa: E402
from snnlth.report.render import write_report  # noqa: E402
from snnlth.report.tables import table1, to_text  # noqa: E402

GOAL_TIME, GOAL_GAP = 0.25, 1.0
TABLE_ROUNDS = (5, 10, 14)  # the levels every method trains tickets at (lrr --lrr-jump 5 reaches exactly these)


@dataclasses.dataclass(frozen=True)
class Preset:
    """The benchmark's scale. ``full``: about an hour on 2 cores; ``quick``: the same code path in minutes."""

    train_subset: int
    test_subset: int
    epochs: int
    rounds: int
    prune_rate: float
    seeds: int
    search_epochs_ss: int  # IMP+ET+SS: epochs of each search round
    lrr_epochs: int
    batch_size: int = 64
    lr: float = 0.1
    timesteps: int = 5


PRESETS = {
    "full": Preset(train_subset=1000, test_subset=2000, epochs=8, rounds=14, prune_rate=0.25, seeds=3,
                   search_epochs_ss=2, lrr_epochs=2),
    "quick": Preset(train_subset=480, test_subset=500, epochs=3, rounds=14, prune_rate=0.25, seeds=1,
                    search_epochs_ss=2, lrr_epochs=1),
}


def eb_targets(preset: Preset) -> tuple[str, ...]:
    """Early-Bird targets with exactly IMP's survivor counts at :data:`TABLE_ROUNDS` (a sparsity s prunes
    floor(s·N): s is taken half a weight above the count, so the floor lands on it)."""
    sizes = Sizes.of(create_model(ModelConfig(model="convnet", timesteps=preset.timesteps), 1, 28, 10), ())
    keep = sizes.imp_survivors(preset.prune_rate, preset.rounds, "global")
    total = keep[0]
    return tuple(repr((total - keep[k] + 0.5) / total) for k in TABLE_ROUNDS)


def methods(preset: Preset) -> list[tuple[str, dict]]:
    """(label, [search] fields) of every method compared."""
    at = tuple(str(k) for k in TABLE_ROUNDS)
    targets = eb_targets(preset)
    return [
        ("IMP", {"method": "imp"}),
        ("IMP+ET", {"method": "imp", "early_time": "auto", "retrain_at": at}),
        ("IMP+ET+SS", {"method": "imp", "early_time": "auto", "retrain_at": at,
                       "search_epochs": preset.search_epochs_ss, "et_warmup_epochs": 1}),
        ("EB", {"method": "eb", "target_sparsity": targets}),
        ("EB+ET", {"method": "eb", "early_time": "auto", "target_sparsity": targets}),
        ("GMP", {"method": "gmp", "retrain_at": at}),
        ("GMP+ET", {"method": "gmp", "early_time": "auto", "retrain_at": at}),
        ("LRR", {"method": "lrr", "retrain_at": at, "lrr_epochs": preset.lrr_epochs}),
        ("LRR+ET", {"method": "lrr", "early_time": "auto", "retrain_at": at, "lrr_epochs": preset.lrr_epochs}),
    ]


def seed_order(preset: Preset, seed: int) -> list[tuple[str, dict]]:
    """The methods as a ring started at the (seed mod n)-th: no method is first or last at every seed."""
    ms = methods(preset)
    k = seed % len(ms)
    return ms[k:] + ms[:k]


def config(preset: Preset, seed: int, fields: dict, data_dir: str | None) -> SearchRunConfig:
    return SearchRunConfig(
        data=DataConfig(dataset="fmnist", train_subset=preset.train_subset, test_subset=preset.test_subset),
        model=ModelConfig(model="convnet", timesteps=preset.timesteps),
        train=TrainConfig(epochs=preset.epochs, batch_size=preset.batch_size, lr=preset.lr, seed=seed),
        search=SearchConfig(rounds=preset.rounds, prune_rate=preset.prune_rate, **fields),
        runtime=RuntimeConfig(data_dir=data_dir, device="cpu", eval_every=preset.epochs))


def run_all(preset: Preset, seeds: list[int], root: Path, data_dir: str | None) -> tuple[list[Path], dict]:
    """Every method of every seed (finished runs are skipped); the run directories and each one's bench label."""
    dirs, labels = [], {}
    for seed in seeds:
        for label, fields in seed_order(preset, seed):
            start = time.perf_counter()
            res = search(config(preset, seed, fields, data_dir), runs_root=root)
            top, spent = res.summary["levels"][-1], res.summary["search_seconds_total"]
            print(f"seed {seed} {label:<10} sparsest {100 * top['sparsity_prunable']:.2f} %: "
                  f"{top['test_accuracy']:.2f} %, search {spent:.0f} s (this call {time.perf_counter() - start:.0f} s)"
                  f"  {res.run_dir}", flush=True)
            dirs.append(res.run_dir)
            labels[res.run_dir] = label
    return dirs, labels


def top_point(points: list[Point], key: int) -> Point | None:
    return next((p for p in points if p.key == key), None)


def time_ratios(cs: dict[str, list[Point]], train: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """label -> prunable sparsity (``"98.22"``) -> ``search`` and ``with_final_training`` ratios to IMP, at every
    level both have."""
    at_imp, out = {p.key: p for p in cs["IMP"]}, {}
    for label, points in cs.items():
        if label == "IMP":
            continue
        levels = {}
        for p in points:
            b = at_imp.get(p.key)
            if b is None or p.key == 0:
                continue
            ta, tb = train.get(label, {}).get(p.key), train.get("IMP", {}).get(p.key)
            known = None not in (ta, tb, p.search_seconds, b.search_seconds)
            levels[f"{100 * p.sparsity_prunable:.2f}"] = {
                "search": ratio(p.search_seconds, b.search_seconds),
                "with_final_training": ratio(p.search_seconds + ta, b.search_seconds + tb) if known else None}
        out[label] = levels
    return out


def ratio_text(ratios: dict[str, dict[str, dict]]) -> str:
    cols = sorted({s for levels in ratios.values() for s in levels}, key=float)
    fmt = lambda r: "–" if r is None else f"{r:.2f}×"  # noqa: E731
    rows = [[label, name] + [fmt(levels.get(s, {}).get(key)) for s in cols]
            for label, levels in ratios.items()
            for key, name in (("search", "search"), ("with_final_training", "+ final training"))]
    title = ("time ratio to IMP per level (columns: % of the prunable weights); \"+ final training\": search + the "
             "training of that\nlevel's final ticket over the same for IMP; – where a level holds no final ticket:")
    return title + "\n" + to_text((["method", "time ratio"] + [f"{s} %" for s in cols], rows))


def goal(cs: dict[str, list[Point]]) -> tuple[dict, dict, str]:
    """Per method at IMP's sparsest level: time ratio, accuracy gap, holds; the best method; the printed lines."""
    imp_top = max(cs["IMP"], key=lambda p: p.key)
    out, lines = {}, [f"goal at IMP's sparsest level ({100 * imp_top.sparsity_prunable:.2f} % of the prunable "
                      f"weights, {100 * imp_top.sparsity_all:.2f} % of all; IMP {imp_top.accuracy:.2f} ± "
                      f"{imp_top.accuracy_std:.2f} %, search {imp_top.search_seconds:.0f} s): search time <= "
                      f"{GOAL_TIME}x IMP's, final ticket <= {GOAL_GAP} point below IMP's"]
    for label, points in cs.items():
        p = top_point(points, imp_top.key)
        if label == "IMP" or p is None or not p.final:
            continue
        t, gap = ratio(p.search_seconds, imp_top.search_seconds), imp_top.accuracy - p.accuracy
        holds = t is not None and t <= GOAL_TIME and gap <= GOAL_GAP
        out[label] = {"time_ratio_top": t, "accuracy_gap_top": gap, "accuracy_mean": p.accuracy,
                      "accuracy_std": p.accuracy_std, "holds": holds}
        lines.append(f"  {label:<10} {'holds' if holds else 'FAILS'}: "
                     f"{'–' if t is None else f'{t:.3f}'}x IMP's search time "
                     f"({p.search_seconds:.0f} s), {p.accuracy:.2f} ± {p.accuracy_std:.2f} % "
                     f"(IMP − method: {gap:+.2f} points)")
    within = [(v["time_ratio_top"], k) for k, v in out.items() if v["accuracy_gap_top"] <= GOAL_GAP]
    best = {"label": None, "time_ratio_top": None, "accuracy_gap_top": None}
    if within:
        label = min(within)[1]
        best = {"label": label, "time_ratio_top": out[label]["time_ratio_top"],
                "accuracy_gap_top": out[label]["accuracy_gap_top"]}
    lines.append(f"fastest within {GOAL_GAP} point: " + ("none" if best["label"] is None else
                 f"{best['label']} at {best['time_ratio_top']:.3f}x ({best['accuracy_gap_top']:+.2f} points)"))
    return out, best, "\n".join(lines)


def level_json(points: list[Point]) -> list[dict]:
    return [{"sparsity": row["sparsity_all"], **row} for row in level_rows(points)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the small preset: a path check (minutes; noise numbers)")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the preset's)")
    p.add_argument("--out", required=True, help="write the results as JSON to this file")
    p.add_argument("--runs", help="directory of the search runs (default runs/fast_search[-quick])")
    p.add_argument("--report", help="directory of the `snnlth report` output (default <runs>/report)")
    p.add_argument("--data-dir", help="Fashion-MNIST directory (default: $SNNLTH_DATA, then system dirs)")
    args = p.parse_args()
    name = "quick" if args.quick else "full"
    preset = PRESETS[name]
    seeds = list(range(args.seeds or preset.seeds))
    root = Path(args.runs or f"runs/fast_search{'-quick' if args.quick else ''}")
    start = time.perf_counter()
    print(f"fast-search benchmark ({name}): {preset}, seeds {seeds}, runs under {root}", flush=True)
    dirs, labels = run_all(preset, seeds, root, args.data_dir)
    runs = load_runs(dirs)
    for r in runs:  # the bench's names: two variants of one method (GMP and a longer GMP) are two series
        r.summary["label"] = labels[next(d for d in dirs if Path(d).resolve() == Path(r.path).resolve())]
    report_dir = Path(args.report or root / "report")
    write_report(runs, report_dir)
    cs = curves(runs)
    table_text = to_text(table1(runs))
    print("\n" + table_text)
    ratios = time_ratios(cs, final_train_seconds(runs))
    text = ratio_text(ratios)
    print("\n" + text)
    per_method, best, goal_text = goal(cs)
    print("\n" + goal_text)
    elapsed = time.perf_counter() - start
    print(f"\nreport: {report_dir / 'report.html'}; this call took {elapsed / 60:.1f} min")
    imp_top = max(cs["IMP"], key=lambda q: q.key)
    payload = {"preset": {"name": name, **dataclasses.asdict(preset)}, "seeds": seeds, "machine": machine(),
               "table_rounds": list(TABLE_ROUNDS), "top_sparsity": imp_top.sparsity_all,
               "top_sparsity_prunable": imp_top.sparsity_prunable,
               "methods": {label: {"levels": level_json(pts)} for label, pts in cs.items()},
               "time_ratios": ratios, "goal": per_method, "best": best, "table_text": table_text,
               "time_ratio_text": text, "goal_text": goal_text,
               "run_order": {str(s): [label for label, _ in seed_order(preset, s)] for s in seeds},
               "runs": [str(d) for d in dirs], "elapsed_seconds": elapsed,
               "runs_total_seconds": sum(r.summary["total_seconds"] for r in runs)}
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
