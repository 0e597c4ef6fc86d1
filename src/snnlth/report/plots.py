"""Figures (matplotlib, Agg backend: no display). Each function returns a Figure, or None when the runs hold no data
for it. All numbers come from :mod:`snnlth.report.aggregate` or straight from the run records."""

from __future__ import annotations

from matplotlib.figure import Figure

from snnlth.report.aggregate import columns, comparisons, curves, dense_accuracy, series_points
from snnlth.report.collect import RunRecord
from snnlth.report.figstyle import finish as _finish
from snnlth.report.figstyle import new_figure as _fig
from snnlth.report.series import Series, ablation_groups, run_labels, series, value_of
from snnlth.report.timeplots import accuracy_vs_timesteps, effective_acs_vs_timesteps

# what a level's search_seconds is: docs/methods.md, "Search time, as the paper counts it"
SEARCH_TIME = (
    "the training the search needed before that ticket's own training (for IMP's level k, rounds 0..k−1) plus its "
    "selection work (the Early-Time choice of T, mask scoring, the Early-Bird and round-stop mask distances); the "
    "ticket's own training and full-T retrainings are not search, and evaluation (search_eval_seconds) and wall clock "
    "(search_wall_seconds) are reported apart in summary.json")


def accuracy_vs_sparsity(runs: list[RunRecord]) -> Figure | None:
    cs = curves(runs)
    if not any(p.accuracy is not None for pts in cs.values() for p in pts):
        return None
    fig, ax = _fig()
    for label, pts in cs.items():
        pts = [p for p in pts if p.accuracy is not None]
        x = [100 * (1 - p.sparsity_all) for p in pts]
        y = [p.accuracy for p in pts]
        lo = [p.accuracy - p.accuracy_std for p in pts]
        hi = [p.accuracy + p.accuracy_std for p in pts]
        (line,) = ax.plot(x, y, "-", label=label)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.plot([xi for xi, p in zip(x, pts) if p.final], [p.accuracy for p in pts if p.final], "o",
                color=line.get_color())
        ax.plot([xi for xi, p in zip(x, pts) if not p.final], [p.accuracy for p in pts if not p.final], "o",
                mfc="none", color=line.get_color())
    dense = dense_accuracy(runs)
    if dense is not None:
        ax.axhline(dense, color="k", ls="--", lw=1, label=f"dense ({dense:.2f} %)")
    ax.set_xscale("log")
    ticks = sorted({round(100 * (1 - p.sparsity_all), 2) for pts in cs.values() for p in pts}, reverse=True)
    ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks], fontsize=8)
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("remaining weights, % of all parameters (log scale)")
    ax.set_ylabel("test accuracy %")
    ax.set_title("Accuracy vs sparsity (band: ± std over seeds; hollow: search-path accuracy, at T_early or of a "
                 "round cut short)", fontsize=8)
    ax.legend(fontsize=8)
    return fig


def search_time(runs: list[RunRecord]) -> Figure | None:
    """Search time of each level (:data:`SEARCH_TIME`); levels without one (dense: 0, reinit: None) are left out."""
    cs = {k: [p for p in v if p.search_seconds] for k, v in curves(runs).items()}
    cs = {k: v for k, v in cs.items() if v}
    if not cs:
        return None
    cols = columns(cs)
    keys = [c.key for c in cols]
    fig, ax = _fig(max(6.4, 0.9 * len(keys) * len(cs) / 2 + 3))
    width = 0.8 / len(cs)
    at = {label: {p.key: p for p in pts} for label, pts in cs.items()}
    compared = comparisons(runs)
    for i, label in enumerate(cs):
        xs = [j + i * width for j, k in enumerate(keys) if k in at[label]]
        ys = [at[label][k].search_seconds for k in keys if k in at[label]]
        ax.bar(xs, ys, width, label=label)
        plain = compared.get(label)
        for x, k in zip(xs, [k for k in keys if k in at[label]]):
            if plain in at and k in at[plain]:
                speed = at[plain][k].search_seconds / at[label][k].search_seconds
                ax.annotate(f"{speed:.2f}×", (x, at[label][k].search_seconds), ha="center", va="bottom", fontsize=7)
    ax.set_xticks([j + width * (len(cs) - 1) / 2 for j in range(len(keys))],
                  [f"{100 * c.sparsity_all:.1f}" for c in cols])
    ax.set_xlabel("sparsity, % of all parameters")
    ax.set_ylabel("search time (s)")
    ax.set_title("Search time per level: training before the ticket + selection (mask scoring, distances);\n"
                 "evaluation and wall clock apart. Labels: speed-up of each +ET or +ES variant over its plain method",
                 fontsize=8)
    ax.legend(fontsize=8)
    return fig


def layer_sparsity(runs: list[RunRecord]) -> Figure | None:
    """Per-layer sparsity of the sparsest final ticket of each series (first seed), as the paper's Fig. 6c."""
    tickets, labels = {}, run_labels(runs)
    for r in runs:
        finals = [lv for lv in r.levels if lv["final"] and lv.get("layer_sparsity")]
        if finals and labels[r.path] not in tickets:
            tickets[labels[r.path]] = max(finals, key=lambda lv: lv["sparsity_all"])
    if not tickets:
        return None
    names = list(next(iter(tickets.values()))["layer_sparsity"])
    fig, ax = _fig(max(6.4, 0.45 * len(names) + 2), 4.2)
    for label, lv in tickets.items():
        ls = lv["layer_sparsity"]
        ax.plot(range(len(names)), [100 * ls.get(n, 0.0) for n in names], "o-",
                label=f"{label} ({100 * lv['sparsity_all']:.1f} % overall)")
    ax.set_xticks(range(len(names)), [n.removesuffix(".weight") for n in names], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("sparsity of the layer %")
    ax.set_title("Per-layer sparsity of the sparsest ticket", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def early_time_kl(runs: list[RunRecord]) -> Figure | None:
    ets = [(r, r.summary["early_time"]) for r in runs
           if r.summary and (r.summary.get("early_time") or {}).get("mode") == "auto"]
    if not ets:
        return None
    fig, ax = _fig()
    labels = run_labels(runs)
    for r, et in ets:
        ts = sorted(int(t) for t in et["kl_normalized"])
        (line,) = ax.plot(ts, [et["kl_normalized"][str(t)] for t in ts], "o-", label=f"{labels[r.path]} seed {r.seed}")
        ax.axvline(et["t_early"], color=line.get_color(), ls=":", lw=1)
    ax.axhline(ets[0][1]["threshold"], color="k", ls="--", lw=1, label=f"threshold λ = {ets[0][1]['threshold']}")
    _finish(ax, "timesteps t", "KL(P_t, P_T) / KL(P_2, P_T)", "Early-Time: normalised KL vs t (dotted: chosen T_early)",
            integer_x=True)
    return fig


def early_bird_distance(runs: list[RunRecord]) -> Figure | None:
    ebs = [r for r in runs if r.method == "eb" and any("eb_distance" in m for m in r.metrics)]
    if not ebs:
        return None
    fig, ax = _fig()
    tau, labels = ebs[0].config["search"]["eb_threshold"], run_labels(runs)
    for r in ebs:
        rows = [m for m in r.metrics if m.get("phase") == "eb_search" and "eb_distance" in m]
        found = (r.summary or {}).get("eb") or []  # targets are known once the run is finished
        for i in range(len(rows[0]["eb_distance"]) if rows else 0):
            pts = [(m["epoch"], m["eb_distance"][i]) for m in rows if m["eb_distance"][i] is not None]
            target = f"{100 * found[i]['target_sparsity']:.1f} %" if i < len(found) else f"target {i + 1}"
            if pts:
                (line,) = ax.plot(*zip(*pts), "o-", ms=3, label=f"{labels[r.path]} seed {r.seed}, {target}")
                if i < len(found) and found[i]["converged"]:
                    ax.axvline(found[i]["detection_epoch"], color=line.get_color(), ls=":", lw=1)
    ax.axhline(tau, color="k", ls="--", lw=1, label=f"τ = {tau}")
    ax.set_yscale("log")
    _finish(ax, "epoch", "max mask distance to the last masks",
            "Early-Bird: mask distance vs epoch (dotted: detection)", legend_size=7, integer_x=True)
    return fig


def spikes_vs_sparsity(runs: list[RunRecord]) -> Figure | None:
    """Only final tickets trained at their run's full T (not at T_early, nor at a one-shot ``--t-post``): spikes
    summed over timesteps are not comparable across T."""
    cs = {s.label: [p for p in series_points(s) if p.spikes is not None and p.final
                    and p.timesteps == s.runs[0].config["model"]["timesteps"]] for s in series(runs)}
    cs = {k: v for k, v in cs.items() if v}
    if not cs:
        return None
    fig, ax = _fig()
    for label, pts in cs.items():
        ax.plot([100 * p.sparsity_all for p in pts], [p.spikes for p in pts], "o-", label=label)
    _finish(ax, "sparsity, % of all parameters", "spikes per test image (all LIF layers, all t)",
            "Firing activity vs sparsity (tickets trained at full T)")
    return fig


def _final_by_round(runs: list[RunRecord]) -> dict[int, list[tuple[RunRecord, dict]]]:
    """Final levels of finished runs, by round."""
    out: dict[int, list[tuple[RunRecord, dict]]] = {}
    for r in runs:
        for lv in (r.summary or {}).get("levels", []):
            if lv.get("final") and lv.get("round") is not None and lv.get("test_accuracy") is not None:
                out.setdefault(lv["round"], []).append((r, lv))
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def t_early_vs_lambda(runs: list[RunRecord]) -> Figure | None:
    """The paper's λ ablation: the T_early each Early-Time run's KL curve gives for every threshold λ (the rule: the
    smallest t whose normalised KL is below λ, else T), and the λ each run actually used."""
    ets = [(r, r.summary["early_time"]) for r in runs
           if r.summary and (r.summary.get("early_time") or {}).get("mode") == "auto"]
    if not ets:
        return None
    grid, labels = [i / 100 for i in range(5, 101)], run_labels(runs)
    fig, ax = _fig()
    for r, et in ets:
        norm = {int(t): v for t, v in et["kl_normalized"].items()}
        t_max = max(norm)
        curve = [next((t for t in sorted(norm) if norm[t] < lam), t_max) for lam in grid]
        (line,) = ax.step(grid, curve, where="post", label=f"{labels[r.path]} seed {r.seed}")
        ax.plot([et["threshold"]], [et["t_early"]], "o", color=line.get_color())
    _finish(ax, "threshold λ", "T_early", "T_early vs λ (dot: the λ the run used)", integer_x=False)
    return fig


def _ablation_label(name: str, text: str, many: bool) -> str:
    return f"{name}: {text}" if many else text


def _rewind_lines(group: list[Series]) -> list[tuple[str, list[int], list[float]]]:
    """One line per round of a group of series (mean final accuracy against the rewind epoch), if two epochs or
    more have that round."""
    by_round: dict[int, dict[int, float]] = {}
    pruned: dict[int, float] = {}
    for s in group:
        for k, pairs in _final_by_round(s.runs).items():
            by_round.setdefault(k, {})[value_of(s, "search.rewind_epoch", 0)] = _mean(
                [lv["test_accuracy"] for _, lv in pairs])
            pruned.setdefault(k, 100 * pairs[0][1]["sparsity_all"])
    return [(f"round {k} ({pruned[k]:.1f} % pruned)", sorted(by_r), [by_r[x] for x in sorted(by_r)])
            for k, by_r in sorted(by_round.items()) if len(by_r) > 1]


def accuracy_vs_rewind(runs: list[RunRecord]) -> Figure | None:
    """The paper's rewinding ablation: accuracy of each round's final ticket against the rewind epoch (mean over
    seeds), over series that differ in ``--rewind-epoch`` alone; any other difference makes another group of lines."""
    groups = [(name, lines) for name, g in ablation_groups(runs, "search.rewind_epoch") if (lines := _rewind_lines(g))]
    if not groups:
        return None
    fig, ax = _fig()
    for name, lines in groups:
        for text, xs, ys in lines:
            ax.plot(xs, ys, "o-", label=_ablation_label(name, text, len(groups) > 1))
    title = "Accuracy vs rewinding epoch (final tickets" + ("" if len(groups) > 1 else f"; {groups[0][0]}") + ")"
    _finish(ax, "rewind epoch R", "test accuracy %", title, integer_x=True)
    return fig


def _scope_lines(group: list[Series]) -> list[tuple[str, list[float], list[float]]]:
    """One line per series of a group (mean final accuracy against sparsity, by round), if two or more have one."""
    lines = []
    for s in group:
        pts = sorted((k, _mean([lv["sparsity_all"] for _, lv in pairs]),
                      _mean([lv["test_accuracy"] for _, lv in pairs])) for k, pairs in _final_by_round(s.runs).items())
        if pts:
            lines.append((f"{value_of(s, 'search.scope', 'global')} magnitude pruning", [100 * x for _, x, _ in pts],
                          [a for _, _, a in pts]))
    return lines if len(lines) > 1 else []


def global_vs_local(runs: list[RunRecord]) -> Figure | None:
    """The paper's scope ablation: accuracy vs sparsity of series pruned globally and per layer (mean over seeds)
    that differ in ``--scope`` alone; any other difference makes another group of lines."""
    groups = [(name, lines) for name, g in ablation_groups(runs, "search.scope") if (lines := _scope_lines(g))]
    if not groups:
        return None
    fig, ax = _fig()
    for name, lines in groups:
        for text, xs, ys in lines:
            ax.plot(xs, ys, "o-", label=_ablation_label(name, text, len(groups) > 1))
    title = "Global vs per-layer (local) pruning" + ("" if len(groups) > 1 else f" ({groups[0][0]})")
    _finish(ax, "sparsity, % of all parameters", "test accuracy %", title)
    return fig


FIGURES = {
    "accuracy_vs_sparsity.png": accuracy_vs_sparsity,
    "search_time.png": search_time,
    "layer_sparsity.png": layer_sparsity,
    "early_time_kl.png": early_time_kl,
    "early_bird_distance.png": early_bird_distance,
    "spikes_vs_sparsity.png": spikes_vs_sparsity,
    "t_early_vs_lambda.png": t_early_vs_lambda,
    "accuracy_vs_rewind.png": accuracy_vs_rewind,
    "global_vs_local.png": global_vs_local,
    "accuracy_vs_timesteps.png": accuracy_vs_timesteps,
    "effective_acs_vs_timesteps.png": effective_acs_vs_timesteps,
}
