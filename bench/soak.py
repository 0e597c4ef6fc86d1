"""Soak test of resumability: the `make demo` IMP + Early-Time search (configs/demo.toml), killed with SIGKILL at
random moments and resumed by rerunning the same command, against the same search run uninterrupted.

    .venv/bin/python bench/soak.py [--kills 10] [--seed 0] [--out DIR]

Prints each kill (seconds after the start of that attempt, what the run directory held), the number of restarts,
and whether summary (timing fields aside), metrics rows and every mask equal the uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 4.0  # imports and data loading of a fresh process, before any training
sys.path.insert(0, str(ROOT))

from tests.methods.test_resume import TIMING, _strip  # noqa: E402  (the same comparison as the tests)


def command(out: Path) -> list[str]:
    return [sys.executable, "-m", "snnlth", "search", "--config", str(ROOT / "configs" / "demo.toml"),
            "--early-time", "auto", "--out", str(out), "--no-progress"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/soak")
    args = p.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    full, killed = out / "uninterrupted", out / "killed"
    start = time.perf_counter()
    subprocess.run(command(full), check=True, capture_output=True)
    total = time.perf_counter() - start
    print(f"uninterrupted: {total:.0f} s", flush=True)
    rng = random.Random(args.seed)
    # the kill moments: uniform over the uninterrupted run's duration, each attempt waiting from the last moment to
    # the next (plus the few seconds a fresh process needs to import and load the data)
    moments = sorted(rng.uniform(0, total) for _ in range(args.kills))
    gaps = [b - a for a, b in zip([0.0, *moments], moments)]
    kills, attempts = 0, 0
    while True:
        attempts += 1
        proc = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < args.kills:
            delay = gaps[kills] + STARTUP_SECONDS
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                held = sorted(p.relative_to(killed).as_posix() for p in killed.rglob("*.pt")) if killed.exists() else []
                print(f"kill {kills}: {delay:.1f} s into attempt {attempts}; {len(held)} tensor files, the last "
                      f"phases {[h for h in held if h.startswith('phases/')][-2:]}", flush=True)
                continue
        else:
            proc.wait()
        if proc.returncode != 0:
            raise SystemExit(f"attempt {attempts} failed: {proc.stderr.read().decode()[-500:]}")
        break
    a = json.loads((full / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    rows = lambda d: [_strip(json.loads(x)) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    masks = sorted(p.name for p in (full / "masks").glob("*.pt"))
    same_masks = all(_mask_equal(full / "masks" / m, killed / "masks" / m) for m in masks)
    print(f"{kills} kills, {attempts} attempts; summary equal (timing aside: {sorted(TIMING)[:3]}...): "
          f"{_strip(a) == _strip(b)}; metrics rows equal: {rows(full) == rows(killed)}; {len(masks)} masks equal: "
          f"{same_masks}; starts in env.json: {len(json.loads((killed / 'env.json').read_text())['starts'])}")


def _mask_equal(a: Path, b: Path) -> bool:
    from snnlth import masks as M
    from snnlth.rundir.store import load_blob

    return M.hamming(M.unpack(load_blob(a)), M.unpack(load_blob(b))) == 0.0


if __name__ == "__main__":
    main()
