"""The frameworks' own networks (spikingjelly 2.0's zoo PLIF FashionMNISTNet and SEW-ResNet, snntorch 1.0's tutorial
convnet and fully connected net; ``tests/adapters/zoo.py``) trained with their frameworks' recipes on a real
Fashion-MNIST subset: snnlth's dense round (``find_ticket(..., rounds=1)``, its level 0) against the same recipe in a
plain PyTorch loop from the same initial weights over the same batches, side by side in one run.

    .venv/bin/python bench/zoo.py [--quick] [--nets plif,sew,...] [--out FILE.json] [--runs DIR]

The plain loop runs twice: with PyTorch's fused optimiser kernel (the one snnlth's trainer uses, so the two should
end in the same weights: ``max |Δw|``) and with PyTorch's default kernel (what a tutorial gets: the same update
rule, rounded differently). Columns: test accuracy (percent) of each; training seconds of snnlth's dense round
(``train_seconds`` of level 0: the epochs' training loops, as snnlth counts search time) and of each plain loop;
the dense round's wall clock (training, per-epoch evaluation, checkpoints, the not-learning probe); the whole
``find_ticket`` call (it also trains round 1). The load average is printed before and after: other work on the
machine slows every column alike.

JSON keys: ``nets`` (one row per network: ``name``, ``size``, ``parameters``, ``train_images``, ``test_images``,
``epochs``, ``timesteps``, ``snnlth_accuracy``, ``plain_fused_accuracy``, ``plain_default_accuracy``,
``max_weight_difference``, ``snnlth_train_seconds``, ``snnlth_dense_wall_seconds``, ``find_ticket_seconds``,
``plain_fused_seconds``, ``plain_default_seconds``, ``search_seconds`` of level 0), ``preset``, ``machine``,
``load_average`` (``before``/``after``), ``command``, ``table_text``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # tests.adapters.zoo: the networks, recipes and plain loop the tests use

import torch  # noqa: E402
from tests.adapters import zoo  # noqa: E402

import snnlth  # noqa: E402


@dataclass(frozen=True)
class Preset:
    """Per network: (size, training images, epochs); one test set for all."""

    sizes: dict
    test_images: int


PRESETS = {
    "full": Preset({"plif": (16, 3000, 3), "sew": (1, 1500, 2), "snntorch-conv": (12, 3000, 3),
                    "snntorch-fc": (1000, 3000, 3)}, test_images=1000),
    "quick": Preset({"plif": (8, 2000, 1), "sew": (1, 300, 1), "snntorch-conv": (8, 500, 1),
                     "snntorch-fc": (128, 500, 1)}, test_images=300),
}


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo")
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if cpuinfo.exists() else platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def _plain(net: torch.nn.Module, z: zoo.ZooNet, data: tuple, epochs: int, fused: bool | None) -> tuple:
    """Train a copy of ``net`` in the plain loop; its test accuracy, training seconds and state."""
    train, test = data
    copy_ = copy.deepcopy(net)
    seconds = zoo.train_plain(copy_, z, zoo.dense_batches(train, test, z.recipe.batch_size), epochs, fused=fused)
    return zoo.accuracy(copy_, z, *test), seconds, copy_.state_dict()


def _warm_up(net: torch.nn.Module, z: zoo.ZooNet, x: torch.Tensor) -> None:
    """One untimed forward and backward of a copy of ``net``: the process's first call of a framework's kernels
    (imports, registrations) is then paid by neither side."""
    z.loss(z.run(copy.deepcopy(net).train(), x[:16], z.recipe.timesteps), torch.zeros(16, dtype=torch.long)).backward()


def _dense_wall(result: snnlth.TicketSearch) -> float:
    """Wall seconds of the dense round's epochs, from the run's metrics rows."""
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return sum(r["wall_seconds"] for r in rows if r.get("phase") == result.levels[0].record["phase"])


def measure(name: str, preset: Preset, runs: Path) -> dict:
    """One network: find_ticket (rounds=1) and both plain loops from the same initial weights; one row."""
    z = zoo.BY_NAME[name]
    size, n_train, epochs = preset.sizes[name]
    data = snnlth.load_dataset("fmnist", train_subset=n_train, test_subset=preset.test_images)
    net = z.build(size, 0)
    untouched = copy.deepcopy(net)
    _warm_up(net, z, data[0][0])
    start = time.perf_counter()
    result = snnlth.find_ticket(net, *data, rounds=1, out=runs / name, progress=False, device="cpu",
                                **z.recipe.options(epochs))
    find_seconds = time.perf_counter() - start
    fused_acc, fused_s, fused_state = _plain(untouched, z, data, epochs, True)
    default_acc, default_s, _ = _plain(untouched, z, data, epochs, None)
    result.apply(0)
    diff = max((v.float() - fused_state[k].float()).abs().max().item() for k, v in net.state_dict().items()
               if v.is_floating_point())
    dense = result.levels[0]
    return {"name": name, "size": size, "parameters": sum(p.numel() for p in net.parameters()),
            "train_images": n_train, "test_images": preset.test_images, "epochs": epochs,
            "timesteps": z.recipe.timesteps, "snnlth_accuracy": dense.accuracy, "plain_fused_accuracy": fused_acc,
            "plain_default_accuracy": default_acc, "max_weight_difference": diff,
            "snnlth_train_seconds": dense.record["train_seconds"], "snnlth_dense_wall_seconds": _dense_wall(result),
            "find_ticket_seconds": find_seconds, "plain_fused_seconds": fused_s, "plain_default_seconds": default_s,
            "search_seconds": dense.search_seconds}


HEADER = ("| network | params | train / test images | epochs | T | snnlth dense | plain, fused kernel | plain, default "
          "kernel | max abs Δw (snnlth vs fused) | snnlth train s | plain fused s | plain default s | snnlth dense "
          "wall s | find_ticket s (2 rounds) |")


def table(rows: list[dict]) -> str:
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for r in rows:
        lines.append(
            f"| {r['name']} ({r['size']}) | {r['parameters']:,} | {r['train_images']:,} / {r['test_images']:,} | "
            f"{r['epochs']} | {r['timesteps']} | {r['snnlth_accuracy']:.2f} % | {r['plain_fused_accuracy']:.2f} % | "
            f"{r['plain_default_accuracy']:.2f} % | {r['max_weight_difference']:.2g} | "
            f"{r['snnlth_train_seconds']:.1f} | {r['plain_fused_seconds']:.1f} | {r['plain_default_seconds']:.1f} | "
            f"{r['snnlth_dense_wall_seconds']:.1f} | {r['find_ticket_seconds']:.1f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one epoch: a check of the code path")
    parser.add_argument("--nets", default=",".join(z.name for z in zoo.ZOO),
                        help=f"comma-separated subset of {', '.join(z.name for z in zoo.ZOO)}")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--runs", type=Path, help="keep the run directories here (a new folder under it per call; "
                        "default: a temporary folder, removed after)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    names = [n.strip() for n in args.nets.split(",") if n.strip()]
    unknown = [n for n in names if n not in zoo.BY_NAME]
    if unknown:
        raise SystemExit(f"unknown network(s) {', '.join(unknown)}; choose from {', '.join(zoo.BY_NAME)}")
    preset_name = "quick" if args.quick else "full"
    preset = PRESETS[preset_name]
    before = os.getloadavg()
    print(f"load average before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = (args.runs or Path(tmp)) / time.strftime("zoo-%Y%m%dT%H%M%S")
        rows = []
        for name in names:
            rows.append(measure(name, preset, runs))
            r = rows[-1]
            print(f"{name}: snnlth {r['snnlth_accuracy']:.2f} %, plain fused {r['plain_fused_accuracy']:.2f} %, "
                  f"plain default {r['plain_default_accuracy']:.2f} % (load average {os.getloadavg()[0]:.2f})",
                  flush=True)
    after = os.getloadavg()
    text = table(rows)
    print("\n" + text)
    print(f"\nload average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    if args.out:
        blob = {"nets": rows, "preset": {"name": preset_name, **asdict(preset)}, "machine": machine(),
                "load_average": {"before": before, "after": after},
                "command": " ".join(["bench/zoo.py", *(sys.argv[1:] if argv is None else argv)]), "table_text": text}
        args.out.write_text(json.dumps(blob, indent=2) + "\n")


if __name__ == "__main__":
    main()
