"""Tables as (header, rows) of strings: the paper's Table 1 layout, and one line per run."""

from __future__ import annotations

from snnlth.report.aggregate import Point, columns, comparisons, curves
from snnlth.report.collect import NO_SEARCH_METHODS, RunRecord
from snnlth.report.series import run_labels

Table = tuple[list[str], list[list[str]]]


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s:.1f} s"


def fmt_acc(p: Point | None) -> str:
    if p is None or p.accuracy is None:
        return "–"
    text = f"{p.accuracy:.2f}" + (f" ± {p.accuracy_std:.2f}" if p.n > 1 else "")
    return text if p.final else text + " †"


def fmt_delta(base: Point | None, other: Point | None) -> str:
    """Accuracy difference, only between two final tickets trained at the same T (a search-path accuracy at T_early
    is not a ticket's accuracy, and a ticket retrained at ``--t-post 3`` is not comparable with one at T = 5)."""
    if base is None or other is None or not (base.final and other.final):
        return "–"
    if base.timesteps is None or base.timesteps != other.timesteps:
        return "–"
    if base.accuracy is None or other.accuracy is None:
        return "–"
    return f"{other.accuracy - base.accuracy:+.2f}"


def fmt_speedup(base: Point | None, other: Point | None) -> str:
    if base is None or other is None or not base.search_seconds or not other.search_seconds:
        return "–"
    return f"{base.search_seconds / other.search_seconds:.2f}×"


def table1(runs: list[RunRecord]) -> Table:
    """Rows per series: accuracy and search time at each sparsity level (columns: % of all parameters pruned), then for
    each +ET or +ES variant the accuracy difference (final tickets of equal T only) and the search speed-up against
    the series of its plain method with the same settings."""
    cs, compared = curves(runs), comparisons(runs)
    cols = columns(cs)
    keys = [c.key for c in cols]
    header = ["method", "metric"] + [f"{100 * c.sparsity_all:.2f} %" for c in cols]
    at = {label: {p.key: p for p in pts} for label, pts in cs.items()}
    rows = []
    for label in cs:
        rows.append([label, "accuracy %"] + [fmt_acc(at[label].get(k)) for k in keys])
        rows.append([label, "search time"] + [fmt_seconds(at[label][k].search_seconds) if k in at[label] else "–"
                                              for k in keys])
    for label in cs:
        plain = compared.get(label)
        if plain not in at:
            continue
        delta = [fmt_delta(at[plain].get(k), at[label].get(k)) for k in keys]
        speed = [fmt_speedup(at[plain].get(k), at[label].get(k)) for k in keys]
        rows.append([f"{label} vs {plain}", "Δ accuracy"] + delta)
        rows.append([f"{label} vs {plain}", "speed-up"] + speed)
    return header, rows


def _ops_cells(p: Point) -> list[str]:
    """Effective ACs and MACs per image, activation sparsity and energy of a ticket; ``≈`` marks the uniform-activity
    estimate (SynOps and MACs) of a run written before exact counts."""
    ops = p.ops
    if ops is None:
        return ["–"] * 4
    mark = "" if ops.exact else "≈ "
    millions = ["–" if v is None else f"{mark}{v / 1e6:.3f} M" for v in (ops.acs, ops.macs)]
    return [*millions, "–" if ops.activation_sparsity is None else f"{ops.activation_sparsity:.3f}",
            "–" if p.energy_uj is None else f"{mark}{p.energy_uj:.3f} µJ"]


def ticket_table(runs: list[RunRecord]) -> Table:
    """Storage, operations and energy per test image of every final ticket (mean over seeds)."""
    header = ["method", "sparsity (all)", "accuracy %", "ticket size", "dense fp32", "smaller", "Effective ACs / image",
              "Effective MACs / image", "activation sparsity", "energy / image"]
    rows = []
    for label, pts in curves(runs).items():
        for p in pts:
            if not p.final or p.ticket_bytes is None:
                continue
            rows.append([label, f"{100 * p.sparsity_all:.2f} %", fmt_acc(p), f"{p.ticket_bytes / 1024:.1f} KiB",
                         f"{p.dense_bytes / 1024:.1f} KiB", f"{p.dense_bytes / p.ticket_bytes:.1f}×", *_ops_cells(p)])
    return header, rows


def run_table(runs: list[RunRecord]) -> Table:
    header = ["run", "method", "seed", "T", "T_early", "EB epochs", "sparsest final ticket", "search", "total",
              "status"]
    rows, labels = [], run_labels(runs)
    for r in runs:
        s = r.summary or {}
        et = s.get("early_time") or {}
        eb = s.get("eb") or []
        finals = [lv for lv in r.levels if lv["final"]]
        sparsest = max(finals, key=lambda lv: lv["sparsity_all"]) if finals else None
        ticket = (f"{100 * sparsest['sparsity_all']:.2f} % → {sparsest['test_accuracy']:.2f} %" if sparsest else "–")
        status = "finished" if r.finished else "running or stopped"
        if r.finished and "search_wall_seconds" not in s:
            status += "; written before 0.2: its search time counts evaluation too"
        if r.missing:
            status += f"; missing {', '.join(r.missing)}"
        rows.append([r.path.as_posix(), labels[r.path], str(r.seed), str(r.config["model"]["timesteps"]),
                     str(et.get("t_early", "–")), ", ".join(str(e["detection_epoch"]) for e in eb) or "–", ticket,
                     "–" if r.method in NO_SEARCH_METHODS else fmt_seconds(s.get("search_seconds_total")),
                     fmt_seconds(s.get("total_seconds")), status])
    return header, rows


def to_markdown(table: Table) -> str:
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def to_text(table: Table, max_rows: int | None = None) -> str:
    """Plain aligned text (for terminals)."""
    header, rows = table
    rows = rows[:max_rows] if max_rows else rows
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), *map(fmt, rows)])
