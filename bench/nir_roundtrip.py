"""NIR export and NeuroBench counts of real tickets, side by side with the simulators nobody here wrote.

    .venv/bin/python bench/nir_roundtrip.py [--quick] [--out FILE.json] [--runs DIR]

For convnet, lenet300 and the 28 px vgg16 and resnet19: a short real search on Fashion-MNIST (one round of 50 %
pruning), its sparsest ticket exported with ``snnlth.to_nir`` (graph file size, node count; the safetensors ticket's
size beside it), imported by spikingjelly 2.0.0 (``import_from_nir``, float32 as written, and the same graph in
float64 with both simulators in float64) and, for the fully connected lenet300, by snntorch 1.0.0 (one image at a
time: its Flatten(0, -1) flattens the batch too); per-step logits compared with snnlth's (max |Δlogit|) and the
predictions (argmax of the logits summed over T; agreement). Then ``snnlth.count_ops`` against NeuroBench 2.3.0's
``SynapticOperations`` on the same ticket and images, with NeuroBench's activation sparsity, connection sparsity and
footprint. Searches are reused from ``--runs`` when finished.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # tests.helpers: what NeuroBench and spikingjelly run, as the tests run them

import numpy as np  # noqa: E402
import torch  # noqa: E402

import snnlth  # noqa: E402
from snnlth.config import DataConfig, ModelConfig, RuntimeConfig, SearchConfig, SearchRunConfig, TrainConfig  # noqa
from snnlth.interchange import nodes  # noqa: E402
from snnlth.nir_export import run_ticket, write_graph  # noqa: E402

T = 3
SIZES = {"convnet": (2000, 3), "lenet300": (2000, 3), "vgg16": (1000, 2), "resnet19": (3000, 3)}  # images, epochs
# SGD at 0.1 does not move the deep networks in so few batches (snnlth's not-learning guard stops them): Adam does
RECIPES = {"vgg16": {"optimizer": "adam", "lr": 1e-3}, "resnet19": {"optimizer": "adam", "lr": 1e-3}}


def search(model: str, runs: Path, quick: bool):
    images, epochs = (256, 1) if quick else SIZES[model]
    cfg = SearchRunConfig(DataConfig(train_subset=images, test_subset=200), ModelConfig(model=model, timesteps=T),
                          TrainConfig(epochs=epochs, batch_size=50, **RECIPES.get(model, {"lr": 0.1})),
                          SearchConfig(rounds=1, prune_rate=0.5),
                          RuntimeConfig(device="cpu"))
    return snnlth.search(cfg, out=runs / model)


def spikingjelly(graph, x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    from tests.helpers import spikingjelly_nir

    return spikingjelly_nir(graph, x, T, dtype)


def snntorch(graph, x: torch.Tensor) -> torch.Tensor:
    import snntorch.utils
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):
        module = import_from_nir(graph)
    outs = []
    with torch.no_grad():
        for i in range(len(x)):
            snntorch.utils.reset(module)
            outs.append(torch.stack([_first(module(x[i:i + 1])).reshape(-1) for _ in range(T)]))
    return torch.stack(outs, 1)


def _first(out):
    return out[0] if isinstance(out, tuple) else out  # its graph module may return (output, state)


def compare(theirs: torch.Tensor, ours: torch.Tensor) -> dict:
    agree = (theirs.sum(0).argmax(1) == ours.sum(0).argmax(1)).float().mean().item()
    return {"max_abs_dlogit": (theirs.double() - ours.double()).abs().max().item(), "prediction_agreement": agree}


@contextlib.contextmanager
def float64_arrays():
    saved = nodes._np, nodes.below
    nodes._np = lambda t: t.detach().cpu().double().numpy()
    nodes.below = lambda v: np.nextafter(np.float64(v), -np.inf)
    try:
        yield
    finally:
        nodes._np, nodes.below = saved


def roundtrip(model: str, run, x: torch.Tensor, n64: int) -> dict:
    ticket, level = run_ticket(run.run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        graph = snnlth.to_nir(ticket)
        write_graph(graph, Path(tmp) / "t.nir")
        nir_bytes = (Path(tmp) / "t.nir").stat().st_size
        safetensors = snnlth.export_ticket(run.run_dir, Path(tmp) / "t.safetensors")["file_bytes"]
    with torch.no_grad():
        ours = ticket.model(x, T)
        ours64 = copy.deepcopy(ticket.model).double()(x[:n64].double(), T)
    row = {"model": model, "sparsity_all": level["sparsity_all"], "test_accuracy": level["test_accuracy"],
           "nodes": len(graph.nodes), "nir_bytes": nir_bytes, "ticket_bytes": safetensors, "images": len(x),
           "spikingjelly_float32": compare(spikingjelly(graph, x), ours)}
    with float64_arrays():
        graph64 = snnlth.to_nir(ticket)
    row["spikingjelly_float64"] = {**compare(spikingjelly(graph64, x[:n64], torch.float64), ours64), "images": n64}
    if model == "lenet300":
        row["snntorch_float32"] = compare(snntorch(graph, x), ours)
    row["neurobench"] = neurobench(ticket.model, x[:32])
    return row


def neurobench(model: torch.nn.Module, x: torch.Tensor) -> dict:
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import TorchModel
    from tests.helpers import SummedOverT

    from snnlth.snn.neuron import LIF

    nb = TorchModel(SummedOverT(model, T))
    nb.add_activation_module(LIF)
    nb.register_hooks()
    with torch.no_grad():
        preds = nb(x)
    data = (x, torch.zeros(len(x), dtype=torch.long))
    theirs = SynapticOperations()(nb, preds, data)
    ours = snnlth.count_ops(model, x, timesteps=T)
    return {"neurobench": {k: float(theirs[k]) for k in ("Effective_ACs", "Effective_MACs", "Dense")},
            "snnlth": {"effective_acs": ours.effective_acs, "effective_macs": ours.effective_macs,
                       "dense": ours.dense, "once_per_image": ours.once_per_image},
            "activation_sparsity": float(ActivationSparsity()(nb, preds, data)),
            "connection_sparsity": float(ConnectionSparsity()(nb)), "footprint_bytes": int(Footprint()(nb))}


def table(rows: list[dict]) -> str:
    lines = ["| model | sparsity (all) | acc % | nodes | .nir KiB | ticket KiB | sj f32 max|Δ| / agree | "
             "sj f64 max|Δ| / agree | snntorch | NB eff. ACs / snnlth | NB eff. MACs / snnlth | act. sparsity |",
             "|" + "---|" * 12]
    for r in rows:
        f32, f64, nb = r["spikingjelly_float32"], r["spikingjelly_float64"], r["neurobench"]
        snt = r.get("snntorch_float32")
        lines.append(
            f"| {r['model']} | {100 * r['sparsity_all']:.2f} % | {r['test_accuracy']:.2f} | {r['nodes']} | "
            f"{r['nir_bytes'] / 1024:.0f} | {r['ticket_bytes'] / 1024:.0f} | {f32['max_abs_dlogit']:.2g} / "
            f"{100 * f32['prediction_agreement']:.1f} % | {f64['max_abs_dlogit']:.2g} / "
            f"{100 * f64['prediction_agreement']:.1f} % | "
            + (f"{snt['max_abs_dlogit']:.2g} / {100 * snt['prediction_agreement']:.1f} %" if snt else "–")
            + f" | {nb['neurobench']['Effective_ACs']:,.0f} / {nb['snnlth']['effective_acs']:,.0f} | "
            f"{nb['neurobench']['Effective_MACs']:,.0f} / {nb['snnlth']['effective_macs']:,.0f} | "
            f"{nb['activation_sparsity']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny searches: a path check, not a measurement")
    p.add_argument("--out", type=Path, help="write the rows as JSON")
    p.add_argument("--runs", type=Path, default=Path("runs/bench_nir"), help="where the searches go (reused)")
    p.add_argument("--models", default="convnet,lenet300,vgg16,resnet19")
    args = p.parse_args(argv)
    x = snnlth.load_dataset("fmnist", train_subset=10, test_subset=200)[1][0]
    rows, start = [], time.time()
    for model in args.models.split(","):
        run = search(model, args.runs, args.quick)
        rows.append(roundtrip(model, run, x, 32 if args.quick else 64))
        print(f"{model}: done at {time.time() - start:.0f} s", flush=True)
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "table_text": text, "machine": platform.processor() or
                                        platform.machine(), "command": " ".join(sys.argv)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
