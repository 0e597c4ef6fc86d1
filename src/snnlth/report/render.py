"""Write ``report.md``, a self-contained ``report.html`` (images embedded) and the PNGs, from one list of blocks."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from snnlth.report.aggregate import dense_accuracy
from snnlth.report.collect import RunRecord
from snnlth.report.plots import FIGURES, SEARCH_TIME
from snnlth.report.series import series
from snnlth.report.tables import Table, run_table, table1, ticket_table, to_markdown

CAPTIONS = {
    "accuracy_vs_sparsity.png": "Test accuracy vs remaining weights, mean ± std over seeds; dashed: dense network at "
                                "full T.",
    "search_time.png": f"Search time of each ticket, per series and sparsity level: {SEARCH_TIME}. Labels: the "
                       "speed-up of each +ET or +ES variant over its plain method with the same settings.",
    "layer_sparsity.png": "Per-layer sparsity of the sparsest ticket of each series.",
    "early_time_kl.png": "Early-Time: normalised KL divergence vs timesteps, threshold and chosen T_early.",
    "early_bird_distance.png": "Early-Bird: mask distance vs epoch, threshold τ and detection epochs.",
    "spikes_vs_sparsity.png": "Spikes per test image (all LIF layers, all timesteps) vs sparsity, full-T tickets.",
    "t_early_vs_lambda.png": "Early-Time ablation: T_early each run's KL curve gives for every threshold λ.",
    "accuracy_vs_rewind.png": "Rewinding ablation: final-ticket accuracy vs --rewind-epoch, per round, of series "
                              "differing in --rewind-epoch alone.",
    "global_vs_local.png": "Scope ablation: accuracy vs sparsity with global and per-layer magnitude pruning, of "
                             "series differing in --scope alone.",
    "accuracy_vs_timesteps.png": "Test accuracy of each final ticket read out after t timesteps, mean over seeds: the "
                                 "prediction argmax of the logits summed over steps 1..t (the network is causal, so "
                                 "this is inference at T' = t).",
    "effective_acs_vs_timesteps.png": "Effective ACs per test image of each final ticket over steps 1..t, mean over "
                                      "seeds: the cost of inference at T' = t (NeuroBench 2.3's count; the "
                                      "direct-coded first layer's MACs are apart, at step 1).",
}

SEARCH_TIME_NOTE = (
    "Columns: sparsity as % of all parameters. † marks accuracy on the search path (at T_early, or of a round cut "
    f"short by round stop), not a ticket trained to the end at full T. Search time: {SEARCH_TIME}; – where a level "
    "has none (reinit trains the masks of another run and searches nothing). Δ accuracy compares final tickets of "
    "equal T only. ± is the std over seeds; runs that differ in more than the seed are separate rows, never averaged.")


TICKET_NOTE = (
    "Ticket size: 1 mask bit per prunable weight + fp32 survivors + the other tensors (what `snnlth export` writes); "
    "dense fp32: the dense state dict, NeuroBench's footprint. Operations per test image, over the whole test set: "
    "effective ACs / MACs as NeuroBench 2.3 counts them: per call of a Conv/Linear layer, the connections that carry a "
    "non-zero input through a non-zero weight (bias excluded); ACs where the layer is fed by spikes, MACs where it is "
    "fed by real values (the direct-coded first layer, counted once per image). Energy = 0.9 pJ per AC, 4.6 pJ per "
    "MAC, 45 nm (Horowitz ISSCC 2014). Activation sparsity: 1 − non-zero / all outputs of the spiking neuron layers "
    "(NeuroBench). ≈: the uniform-activity estimate (SynOps = nnz(W) × output positions × input firing rate), of runs "
    "written before exact counts or of a network with recurrent layers, whose operations NeuroBench counts by rules "
    "snnlth does not implement.")


def build_blocks(runs: list[RunRecord], images: dict[str, bytes]) -> list[tuple]:
    first = runs[0]
    blocks: list[tuple] = [("h1", f"snnlth report: {first.model} on {first.dataset}")]
    dense = dense_accuracy(runs)
    blocks.append(("p", f"{len(runs)} run(s); methods: {', '.join(s.label for s in series(runs))}; "
                        f"final model T = {first.config['model']['timesteps']}"
                        + (f"; dense accuracy {dense:.2f} %." if dense is not None else ".")))
    blocks.append(("h2", "Accuracy and search time (layout of the paper's Table 1)"))
    blocks.append(("table", table1(runs)))
    blocks.append(("p", SEARCH_TIME_NOTE))
    tickets = ticket_table(runs)
    if tickets[1]:
        blocks.append(("h2", "Tickets: storage and energy"))
        blocks.append(("table", tickets))
        blocks.append(("p", TICKET_NOTE))
    blocks.append(("h2", "Runs"))
    blocks.append(("table", run_table(runs)))
    notes = [f"{r.path}: missing {', '.join(r.missing)}" for r in runs if r.missing]
    if notes:
        blocks.append(("h2", "Incomplete runs"))
        blocks.append(("p", "Reported from what is there (levels of unfinished runs are their finished phases in "
                            "metrics.jsonl: rounds, including those round stop cut short, and full-T retrainings, at "
                            "the exact sparsity their rows record, without search time). " + "; ".join(notes)))
    blocks.append(("h2", "Figures"))
    for name, caption in CAPTIONS.items():
        if name in images:
            blocks.append(("img", name, caption))
        else:
            blocks.append(("p", f"({caption.split(':')[0].rstrip('.')}: no data in these runs.)"))
    return blocks


def render_markdown(blocks: list[tuple]) -> str:
    out = []
    for b in blocks:
        if b[0] == "h1":
            out.append(f"# {b[1]}")
        elif b[0] == "h2":
            out.append(f"## {b[1]}")
        elif b[0] == "p":
            out.append(b[1])
        elif b[0] == "table":
            out.append(to_markdown(b[1]))
        elif b[0] == "img":
            out.append(f"![{b[2]}]({b[1]})\n\n*{b[2]}*")
    return "\n\n".join(out) + "\n"


def _html_table(table: Table) -> str:
    header, rows = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(blocks: list[tuple], images: dict[str, bytes]) -> str:
    parts = []
    for b in blocks:
        if b[0] in ("h1", "h2", "p"):
            parts.append(f"<{b[0]}>{html.escape(b[1])}</{b[0]}>")
        elif b[0] == "table":
            parts.append(_html_table(b[1]))
        elif b[0] == "img":
            data = base64.b64encode(images[b[1]]).decode()
            parts.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(b[2])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 7px}"
             "th{background:#eee}img{max-width:100%}figcaption{font-size:13px;color:#444}")
    return ('<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>snnlth report</title>'
            f"<style>{style}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")


def figures(runs: list[RunRecord]) -> dict[str, bytes]:
    import matplotlib.pyplot as plt

    images = {}
    for name, make in FIGURES.items():
        fig = make(runs)
        if fig is None:
            continue
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        plt.close(fig)
        images[name] = buf.getvalue()
    return images


def write_report(runs: list[RunRecord], out_dir: str | Path) -> dict[str, Path]:
    """Write the report files atomically; returns their paths by name."""
    from snnlth.rundir.atomic import atomic_write_bytes, atomic_write_text

    out = Path(out_dir)
    images = figures(runs)
    blocks = build_blocks(runs, images)
    paths = {}
    for name, data in images.items():
        atomic_write_bytes(out / name, data)
        paths[name] = out / name
    atomic_write_text(out / "report.md", render_markdown(blocks))
    atomic_write_text(out / "report.html", render_html(blocks, images))
    paths["report.md"], paths["report.html"] = out / "report.md", out / "report.html"
    # temp files of a report write that was killed: ``.<one of our files>.<random>.tmp``
    for tmp in out.glob(".*.tmp"):
        if tmp.name[1:].rsplit(".", 2)[0] in paths:
            tmp.unlink(missing_ok=True)
    return paths
