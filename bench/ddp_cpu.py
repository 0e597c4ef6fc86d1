"""Data-parallel search on the CPU: the same IMP search as one process (all cores) and under torchrun as N gloo
processes (cores split between them), without and with --sync-bn, side by side; prints seconds of training and of
evaluation per epoch (every epoch is evaluated: --eval-every 1), the ratio, and how far the round-1 masks are from
the one-process run's. ``--src DIR`` runs the searches from another checkout's ``src`` (e.g. a commit before a
change: ``git worktree add /tmp/before <commit>`` then ``--src /tmp/before/src``).

    .venv/bin/python bench/ddp_cpu.py [--nproc 2] [--model convnet] [--train-subset 2000] [--src DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from snnlth import masks as M  # noqa: E402
from snnlth.rundir.store import load_blob  # noqa: E402


def run(out: Path, nproc: int, flags: list[str], src: str | None = None) -> float:
    """Seconds of wall clock of one search; ``flags`` may end with --sync-bn."""
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)] if nproc > 1 else []
    cores = os.cpu_count() or 1
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // nproc)), **({"PYTHONPATH": src} if src else {})}
    start = time.perf_counter()
    subprocess.run([sys.executable, *launch, "-m", "snnlth", "search", "--out", str(out), *flags, "--no-progress"],
                   check=True, env=env, capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--model", default="convnet")
    p.add_argument("--train-subset", type=int, default=2000)
    p.add_argument("--src", help="run snnlth from this src directory (another checkout)")
    p.add_argument("--out")
    args = p.parse_args()
    flags = ["--model", args.model, "--timesteps", "5", "--epochs", "2", "--rounds", "1", "--batch-size", "64",
             "--train-subset", str(args.train_subset), "--test-subset", "1000", "--device", "cpu", "--eval-every", "1"]
    result = {"flags": flags, "cores": os.cpu_count(), "nproc": args.nproc}
    n = args.nproc
    variants = {"p1": (1, []), f"p{n}": (n, []), f"p{n}-sync-bn": (n, ["--sync-bn"])}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (procs, extra) in variants.items():
            out = Path(tmp) / name
            wall = run(out, procs, [*flags, *extra], args.src)
            rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
            masks = M.unpack(load_blob(out / "masks" / "round_01.pt"))
            result[name] = {"wall_seconds": wall, "test_accuracy": rows[-1]["test_accuracy"],
                            "train_seconds_per_epoch": sum(r["train_seconds"] for r in rows) / len(rows),
                            "eval_seconds_per_epoch": sum(r["eval_seconds"] for r in rows) / len(rows),
                            "images_per_second": sum(r["images_per_second"] for r in rows) / len(rows),
                            "mask_hamming_to_p1": M.hamming(masks, result["p1"]["masks"]) if procs > 1 else 0.0,
                            "masks": masks}
    print(f"{args.model}, {args.train_subset} images, T=5, batch 64, {os.cpu_count()} cores")
    for name in variants:
        r = result[name]
        del r["masks"]
        r["speedup_train"] = result["p1"]["train_seconds_per_epoch"] / r["train_seconds_per_epoch"]
        print(f"  {name:<10} {r['train_seconds_per_epoch']:.1f} s training per epoch ({r['images_per_second']:.0f} "
              f"img/s, {r['speedup_train']:.2f}x), {r['eval_seconds_per_epoch']:.2f} s evaluation per epoch, "
              f"{r['wall_seconds']:.0f} s wall, test {r['test_accuracy']:.2f} %, "
              f"round-1 masks differ from p1's in {r['mask_hamming_to_p1']:.2e} of the weights")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
