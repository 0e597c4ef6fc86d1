"""Figures over the timesteps of inference: what each final ticket gives at T' = t <= T (its levels' ``per_timestep``
rows, mean over seeds; the network is causal, so the first t steps of a run at T are a run at T' = t)."""

from __future__ import annotations

from matplotlib.figure import Figure

from snnlth.report.aggregate import Point, curves
from snnlth.report.collect import RunRecord
from snnlth.report.figstyle import finish, new_figure


def _lines(runs: list[RunRecord], key: str) -> list[tuple[str, list[float], list[float]]]:
    """One line per final ticket that has ``key`` at every t: ``(label, t, values)``."""
    out = []
    for label, pts in curves(runs).items():
        for p in pts:
            rows = _rows(p)
            if p.final and rows and all(r.get(key) is not None for r in rows):
                out.append((f"{label}, {100 * p.sparsity_all:.1f} % pruned", [r["t"] for r in rows],
                            [r[key] for r in rows]))
    return out


def _rows(p: Point) -> list[dict] | None:
    return p.ops.per_timestep if p.ops is not None else None


def _plot(lines: list[tuple[str, list[float], list[float]]], scale: float) -> tuple[Figure, object]:
    fig, ax = new_figure()
    for label, ts, values in lines:
        ax.plot(ts, [v * scale for v in values], "o-", ms=3, label=label)
    return fig, ax


def accuracy_vs_timesteps(runs: list[RunRecord]) -> Figure | None:
    """Test accuracy of each final ticket at T' = t: the prediction ``argmax Σ_{s<=t} logits``."""
    lines = _lines(runs, "accuracy")
    if not lines:
        return None
    fig, ax = _plot(lines, 1.0)
    finish(ax, "timesteps of inference t", "test accuracy %",
           "Accuracy vs timesteps: each final ticket read out after t steps", legend_size=7, integer_x=True)
    return fig


def effective_acs_vs_timesteps(runs: list[RunRecord]) -> Figure | None:
    """Effective ACs per test image of each final ticket over steps 1..t (NeuroBench 2.3's count)."""
    lines = _lines(runs, "effective_acs")
    if not lines:
        return None
    fig, ax = _plot(lines, 1e-6)
    finish(ax, "timesteps of inference t", "effective ACs per image (millions), steps 1..t",
           "Operations vs timesteps: the cost of inference at T' = t", legend_size=7, integer_x=True)
    return fig
