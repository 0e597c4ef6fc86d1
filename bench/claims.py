"""The paper's claims measured at CPU scale: IMP, IMP+ET, IMP+ES, IMP+ET+ES, EB, EB+ET, random pruning and random
re-init on Fashion-MNIST (convnet, T=5), 3 seeds each on the same test images, mean ± std.

    .venv/bin/python bench/claims.py [--quick] [--out FILE.json] [--runs DIR] [--report DIR] [--seeds N]

Prints the Table-1 layout (accuracy ± std and search time per sparsity level), the time ratios of each compared
pair at every level, then each claim with its numbers and whether it holds; writes the `snnlth report` of all runs
and, with ``--out``, the JSON below (``bench/results_md.py`` renders it into docs/results.md). Runs are ordinary
resumable searches: rerunning the same command skips what is finished. Seed after seed, the methods run one
after the other, their order rotated from seed to seed: the six searches (IMP, IMP+ET, IMP+ES, IMP+ET+ES, EB, EB+ET)
in a ring, seed s starting at the (s mod 6)-th, random pruning and reinit right after IMP (they take that seed's IMP
run as their --from). So no method is always the first (cold machine) or the last (warm, or drifted) of a seed.

JSON keys: ``methods`` (label -> levels, each with ``accuracy_mean``/``accuracy_std`` and ``search_seconds_mean``/
``search_seconds_std`` over seeds, ``sparsity_prunable``, ``final``), ``dense_mean``, ``winning_ticket_gap``,
``et_time_ratio_imp``, ``et_time_ratio_eb``, ``es_time_ratio_imp`` (IMP+ET+ES over IMP at the sparsest level),
``round_stop`` (per label and seed, the epoch each round stopped at), ``claims``, ``preset``, ``machine``;
``time_ratios`` (``"IMP+ET vs IMP"`` -> prunable sparsity ``"50.00"`` -> ``search``: search seconds over the base's,
``with_final_training``: search + the training seconds of that level's final ticket over the same for the base, None
where either level holds no final ticket), ``run_order`` (seed -> labels in running order), and ``table_text``,
``time_ratio_text``, ``claims_text``: the Table-1, time-ratio and claims text exactly as printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))  # results_md: the claims' printed form is the page's

import torch  # noqa: E402
from results_md import claims_text  # noqa: E402

from snnlth.api import search  # noqa: E402
from snnlth.config import DataConfig, ModelConfig, RuntimeConfig, SearchConfig, SearchRunConfig, TrainConfig  # noqa: E402
from snnlth.report.aggregate import Point, curves, level_key, mean_std  # noqa: E402
from snnlth.report.collect import RunRecord, load_runs  # noqa: E402
from snnlth.report.render import write_report  # noqa: E402
from snnlth.report.series import series  # noqa: E402
from snnlth.report.tables import table1, to_text  # noqa: E402

WINNING_SPARSITY = 0.89  # "IMP at >= 89 % prunable sparsity within 1.0 point of the dense mean"
PAIRS = (("IMP+ET", "IMP"), ("IMP+ES", "IMP"), ("IMP+ET+ES", "IMP"), ("EB", "IMP"), ("EB+ET", "EB"))
RATIO_TITLE = ("time ratios, method over base, per level (columns: % of the prunable weights); \"+ final training\": "
               "search + the\ntraining of that level's final ticket over the same for the base; – where a level holds "
               "no final ticket (search-path\naccuracy at T_early or of a round cut short: the ticket's training is "
               "not known):")


@dataclasses.dataclass(frozen=True)
class Preset:
    """The benchmark's scale. ``full``: about an hour on 2 cores; ``quick``: the same code path in minutes."""

    train_subset: int
    test_subset: int
    epochs: int
    rounds: int
    prune_rate: float
    seeds: int
    batch_size: int = 64
    lr: float = 0.1
    timesteps: int = 5


PRESETS = {
    # 4 rounds of 50 %: levels 50, 75, 87.5, 93.75 % of the prunable weights
    "full": Preset(train_subset=1600, test_subset=3000, epochs=8, rounds=4, prune_rate=0.5, seeds=3),
    "quick": Preset(train_subset=600, test_subset=1000, epochs=4, rounds=4, prune_rate=0.5, seeds=2),
}


FROM_IMP = "<this seed's IMP run>"


def methods(rounds: int, es: dict) -> list[tuple[str, dict]]:
    """(label, [search] fields): the six searches, then the baselines, which take this seed's IMP run as their
    --from; ``es``: round-stop settings besides ``round_stop="mask"`` (default: none, the package's defaults)."""
    last_two = (str(rounds - 1), str(rounds))
    return [
        ("IMP", {"method": "imp"}),
        ("IMP+ET", {"method": "imp", "early_time": "auto"}),
        ("IMP+ES", {"method": "imp", "round_stop": "mask", **es}),
        ("IMP+ET+ES", {"method": "imp", "early_time": "auto", "round_stop": "mask", **es}),
        ("EB", {"method": "eb"}),
        ("EB+ET", {"method": "eb", "early_time": "auto"}),
        ("random", {"method": "random", "from_run": FROM_IMP}),
        ("reinit", {"method": "reinit", "from_run": FROM_IMP, "reinit_levels": last_two}),
    ]


def seed_order(rounds: int, es: dict, seed: int) -> list[tuple[str, dict]]:
    """:func:`methods` in seed ``seed``'s running order: the n searches as a ring started at the (seed mod n)-th,
    the baselines right after IMP (they need this seed's IMP run), so no method is first or last at every seed."""
    ms = methods(rounds, es)
    searches = [m for m in ms if m[1].get("from_run") != FROM_IMP]
    baselines = [m for m in ms if m[1].get("from_run") == FROM_IMP]
    k = seed % len(searches)
    return [m for s in searches[k:] + searches[:k] for m in ([s, *baselines] if s[0] == "IMP" else [s])]


def config(preset: Preset, seed: int, fields: dict, data_dir: str | None) -> SearchRunConfig:
    return SearchRunConfig(
        data=DataConfig(dataset="fmnist", train_subset=preset.train_subset, test_subset=preset.test_subset),
        model=ModelConfig(model="convnet", timesteps=preset.timesteps),
        train=TrainConfig(epochs=preset.epochs, batch_size=preset.batch_size, lr=preset.lr, seed=seed),
        search=SearchConfig(rounds=preset.rounds, prune_rate=preset.prune_rate, **fields),
        runtime=RuntimeConfig(data_dir=data_dir, device="cpu", eval_every=preset.epochs))


def run_all(preset: Preset, seeds: list[int], root: Path, data_dir: str | None, es: dict) -> list[Path]:
    dirs = []
    for seed in seeds:
        imp_dir = None
        for label, fields in seed_order(preset.rounds, es, seed):
            if fields.get("from_run") == FROM_IMP:
                fields = {**fields, "from_run": str(imp_dir)}
            start = time.perf_counter()
            res = search(config(preset, seed, fields, data_dir), runs_root=root)
            s = res.summary
            imp_dir = res.run_dir if label == "IMP" else imp_dir
            last, spent = s["levels"][-1], s["search_seconds_total"]  # None: reinit searches nothing itself
            print(f"seed {seed} {label:<10} sparsest {100 * last['sparsity_prunable']:.2f} %: "
                  f"{last['test_accuracy']:.2f} %, search {'–' if spent is None else f'{spent:.0f} s'} "
                  f"(this call {time.perf_counter() - start:.0f} s)  {res.run_dir}", flush=True)
            dirs.append(res.run_dir)
    return dirs


def level_rows(points: list[Point]) -> list[dict]:
    return [{"sparsity_prunable": p.sparsity_prunable, "sparsity_all": p.sparsity_all, "pruned_weights": p.key,
             "final": p.final, "n": p.n, "accuracy_mean": p.accuracy, "accuracy_std": p.accuracy_std,
             "search_seconds_mean": p.search_seconds, "search_seconds_std": p.search_std} for p in points]


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def sparsest(points: list[Point]) -> Point:
    return max(points, key=lambda p: p.sparsity_all)


def final_train_seconds(runs: list[RunRecord]) -> dict[str, dict[int | float, float | None]]:
    """Series label (as :func:`curves` names it) -> level column -> mean over seeds of the training seconds of that
    level's final ticket; None where the level of some seed is not a final ticket (its ticket's training is not
    known) or did not record them."""
    out: dict[str, dict[int | float, float | None]] = {}
    for s in series(runs):
        groups: dict[int | float, list[dict]] = {}
        for r in s.runs:
            for lv in r.levels:
                groups.setdefault(level_key(lv), []).append(lv)
        out[s.label] = {key: (mean_std([lv["train_seconds"] for lv in lvs])[0]
                              if all(lv["final"] and lv.get("train_seconds") is not None for lv in lvs) else None)
                        for key, lvs in groups.items()}
    return out


def time_ratios(cs: dict[str, list[Point]], train: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """``"IMP+ET vs IMP"`` -> prunable sparsity (``"50.00"``) -> ``search`` and ``with_final_training`` ratios, at
    every level both series have."""
    out = {}
    for label, base in PAIRS:
        if label not in cs or base not in cs:
            continue
        at_base, levels = {p.key: p for p in cs[base]}, {}
        for p in cs[label]:
            b = at_base.get(p.key)
            if b is None:
                continue
            ta, tb = train.get(label, {}).get(p.key), train.get(base, {}).get(p.key)
            known = None not in (ta, tb, p.search_seconds, b.search_seconds)
            levels[f"{100 * p.sparsity_prunable:.2f}"] = {
                "search": ratio(p.search_seconds, b.search_seconds),
                "with_final_training": ratio(p.search_seconds + ta, b.search_seconds + tb) if known else None}
        out[f"{label} vs {base}"] = levels
    return out


def time_ratio_text(ratios: dict[str, dict[str, dict]]) -> str:
    """The time ratios as printed: a title, then one row per pair and kind of ratio, one column per level."""
    cols = sorted({s for levels in ratios.values() for s in levels}, key=float)
    fmt = lambda r: "–" if r is None else f"{r:.2f}×"  # noqa: E731
    rows = [[pair, name] + [fmt(levels.get(s, {}).get(key)) for s in cols]
            for pair, levels in ratios.items()
            for key, name in (("search", "search"), ("with_final_training", "+ final training"))]
    return RATIO_TITLE + "\n" + to_text((["pair", "time ratio"] + [f"{s} %" for s in cols], rows))


def evaluate_claims(cs: dict[str, list[Point]]) -> dict:
    """Every number the claims need, and each claim as (holds, one line with the numbers)."""
    imp = cs["IMP"]
    by_key = {label: {p.key: p for p in pts} for label, pts in cs.items()}
    dense = next(p for p in imp if p.sparsity_all == 0)
    top = sparsest(imp)
    gaps = {f"{100 * p.sparsity_prunable:.2f}": dense.accuracy - p.accuracy
            for p in imp if p.sparsity_prunable >= WINNING_SPARSITY and p.final}
    first_winning = min((p for p in imp if p.sparsity_prunable >= WINNING_SPARSITY and p.final),
                        key=lambda p: p.sparsity_prunable)
    gap = dense.accuracy - first_winning.accuracy
    at_top = {label: by_key[label].get(top.key) for label in cs}
    acc_top = {label: (p.accuracy if p is not None and p.final else None) for label, p in at_top.items()}
    sec_top = {label: (p.search_seconds if p is not None else None) for label, p in at_top.items()}
    out = {
        "dense_mean": dense.accuracy, "dense_std": dense.accuracy_std,
        "winning_ticket_gap": gap, "winning_ticket_gap_by_sparsity": gaps,
        "sparsest_prunable": top.sparsity_prunable,
        "accuracy_at_sparsest": acc_top, "search_seconds_at_sparsest": sec_top,
        "et_time_ratio_imp": ratio(sec_top.get("IMP+ET"), sec_top["IMP"]),
        "et_time_ratio_eb": ratio(sec_top.get("EB+ET"), sec_top.get("EB")),
        "es_time_ratio_imp": ratio(sec_top.get("IMP+ET+ES"), sec_top["IMP"]),
        "es_only_time_ratio_imp": ratio(sec_top.get("IMP+ES"), sec_top["IMP"]),
    }
    moderate = [p for p in imp if 0 < p.sparsity_prunable < WINNING_SPARSITY]
    eb_ratios = {f"{100 * p.sparsity_prunable:.2f}": ratio(by_key["EB"][p.key].search_seconds, p.search_seconds)
                 for p in moderate if p.key in by_key.get("EB", {})}
    out["eb_time_ratio_by_sparsity"] = eb_ratios

    def drop(label: str, base: str) -> float | None:
        a, b = acc_top.get(base), acc_top.get(label)
        return None if a is None or b is None else a - b

    claims = []

    def claim(name: str, holds: bool, detail: str) -> None:
        claims.append({"claim": name, "holds": bool(holds), "detail": detail})

    claim("winning ticket: IMP at >= 89 % within 1.0 point of dense", gap <= 1.0,
          f"dense {dense.accuracy:.2f} ± {dense.accuracy_std:.2f}; IMP at {100 * first_winning.sparsity_prunable:.2f} %"
          f" {first_winning.accuracy:.2f} ± {first_winning.accuracy_std:.2f} (gap {gap:+.2f}); all gaps "
          + ", ".join(f"{s} %: {g:+.2f}" for s, g in gaps.items()))
    for base in ("random", "reinit"):
        d = drop(base, "IMP")
        claim(f"IMP >= 2 points above {base} at the sparsest level", d is not None and d >= 2.0,
              f"IMP {acc_top['IMP']:.2f} vs {base} {acc_top.get(base) or float('nan'):.2f} at "
              f"{100 * top.sparsity_prunable:.2f} % (difference {d if d is not None else float('nan'):+.2f})")
    for label, base, limit, key in (("IMP+ET", "IMP", 0.70, "et_time_ratio_imp"),
                                    ("EB+ET", "EB", 0.80, "et_time_ratio_eb"),
                                    ("IMP+ET+ES", "IMP", 0.25, "es_time_ratio_imp")):
        r, d = out[key], drop(label, base)
        claim(f"{label}: search time <= {limit:.2f}x {base}'s at <= 1.0 point lower accuracy",
              r is not None and r <= limit and d is not None and d <= 1.0,
              f"search {sec_top.get(label) or float('nan'):.0f} s vs {sec_top.get(base) or float('nan'):.0f} s "
              f"(ratio {r if r is not None else float('nan'):.2f}); accuracy {acc_top.get(label) or float('nan'):.2f} "
              f"vs {acc_top.get(base) or float('nan'):.2f} (drop {d if d is not None else float('nan'):+.2f})")
    mean_eb = sum(eb_ratios.values()) / len(eb_ratios) if eb_ratios else None
    d = drop("EB", "IMP")
    claim("Early-Bird far cheaper than IMP at moderate sparsity (mean search-time ratio <= 0.5) and worse at the "
          "sparsest level", mean_eb is not None and mean_eb <= 0.5 and d is not None and d > 0,
          "EB/IMP search time " + ", ".join(f"{s} %: {r:.2f}" for s, r in eb_ratios.items())
          + f"; at {100 * top.sparsity_prunable:.2f} %: EB {acc_top.get('EB') or float('nan'):.2f} vs IMP "
          f"{acc_top['IMP']:.2f} (IMP - EB {d if d is not None else float('nan'):+.2f})")
    out["claims"] = claims
    return out


def round_stops(dirs: list[Path]) -> dict:
    """label -> seed -> the epoch each round stopped at, of the epochs it had."""
    out: dict[str, dict[str, list]] = {}
    for d in dirs:
        s = json.loads((d / "summary.json").read_text())
        if s.get("round_stop"):
            out.setdefault(s["label"], {})[str(s["seed"])] = [f"{r['stop_epoch']}/{r['epochs']}"
                                                               for r in s["round_stop"]]
    return out


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}


def printed_results(runs: list[RunRecord], dirs: list[Path]) -> dict:
    """Print the Table-1 layout, the time ratios, the round stops and the claims; return them for the JSON, the
    printed text included (``table_text``, ``time_ratio_text``, ``claims_text``)."""
    cs = curves(runs)
    table_text = to_text(table1(runs))
    print("\n" + table_text)
    ratios = time_ratios(cs, final_train_seconds(runs))
    ratio_text = time_ratio_text(ratios)
    print("\n" + ratio_text)
    result = evaluate_claims(cs)
    stops = round_stops(dirs)
    print("\nround stop (epoch each round ended at / epochs it had):")
    for label, per_seed in stops.items():
        for seed, epochs in per_seed.items():
            print(f"  {label:<10} seed {seed}: {', '.join(epochs)}")
    claims = claims_text(result["claims"])
    print("\n" + claims)
    return {"methods": {label: {"levels": level_rows(pts)} for label, pts in cs.items()}, "round_stop": stops,
            **result, "time_ratios": ratios, "table_text": table_text, "time_ratio_text": ratio_text,
            "claims_text": claims}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the small preset (minutes; same code path)")
    p.add_argument("--out", help="write the results as JSON to this file")
    p.add_argument("--runs", help="directory of the search runs (default runs/claims[-quick])")
    p.add_argument("--report", help="directory of the `snnlth report` output (default <runs>/report)")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the preset's)")
    p.add_argument("--data-dir", help="Fashion-MNIST directory (default: $SNNLTH_DATA, then system dirs)")
    p.add_argument("--round-stop-threshold", type=float, help="tau of the +ES runs (default: the package's); an "
                   "ablation: the other methods' finished runs are reused")
    args = p.parse_args()
    name = "quick" if args.quick else "full"
    preset = PRESETS[name]
    seeds = list(range(args.seeds or preset.seeds))
    root = Path(args.runs or f"runs/claims{'-quick' if args.quick else ''}")
    start = time.perf_counter()
    print(f"claims benchmark ({name}): {preset}, seeds {seeds}, runs under {root}", flush=True)
    es = {"round_stop_threshold": args.round_stop_threshold} if args.round_stop_threshold else {}
    dirs = run_all(preset, seeds, root, args.data_dir, es)
    runs = load_runs(dirs)
    report_dir = Path(args.report or root / "report")
    write_report(runs, report_dir)
    result = printed_results(runs, dirs)
    elapsed = time.perf_counter() - start
    print(f"\nreport: {report_dir / 'report.html'}; this call took {elapsed / 60:.1f} min")
    if args.out:
        order = {str(s): [label for label, _ in seed_order(preset.rounds, es, s)] for s in seeds}
        payload = {"preset": {"name": name, **dataclasses.asdict(preset)}, "seeds": seeds, "machine": machine(),
                   "round_stop_settings": es or "defaults", "run_order": order, **result,
                   "runs": [str(d) for d in dirs], "elapsed_seconds": elapsed}
        Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
        print(f"results: {args.out}")


if __name__ == "__main__":
    main()
