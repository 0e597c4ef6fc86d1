"""Training-step throughput, measured side by side (interleaved) in one run.

Default (``--compare twin``): our engine against a spikingjelly 2.0 twin of the same network (bench/twin.py; the
twin's figure is the faster of its single-step paper-code loop and its multi-step mode), per device, model and T:
training images/s and peak memory (CPU: peak RSS growth of a fresh process; CUDA: ``max_memory_allocated``), each
variant in its own process. ``--quick`` is a few minutes on 2 cores; ``--out FILE.json`` keeps the rows
(``ours_img_s``, ``twin_img_s``, ``speedup``, ``ours_peak_mb``, ``twin_peak_mb``, ``memory_ratio``).
``--compare lif`` (fused vs reference LIF) and ``--compare bn`` (per-step vs pooled BN) compare our own variants.

    .venv/bin/python bench/engine.py [--quick] [--out FILE.json] [--device auto]
    .venv/bin/python bench/engine.py --compare lif|bn [--model convnet] [--timesteps 5] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import time

import torch

import snnlth.snn.neuron as neuron
from snnlth.config import ModelConfig, TrainConfig
from snnlth.engine.evaluate import seq_loss
from snnlth.engine.optim import make_optimizer, resolve_device
from snnlth.models import create_model

SHAPES = {"convnet": (1, 28), "lenet300": (1, 28), "vgg16": (3, 32), "resnet19": (3, 32)}


def images_per_second(args: argparse.Namespace, device: torch.device, bn_time: str = "per-step") -> float:
    torch.manual_seed(0)
    c, s = SHAPES[args.model]
    model = create_model(ModelConfig(model=args.model, bn_time=bn_time), c, s, 10).to(device)
    opt = make_optimizer(model, TrainConfig())
    x = torch.randn(args.batch_size, c, s, s, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    return args.steps * args.batch_size / timed_steps(model, opt, x, y, args.timesteps, args.steps, device)


def timed_steps(model, opt, x: torch.Tensor, y: torch.Tensor, timesteps: int, steps: int,
                device: torch.device) -> float:
    """Seconds of ``steps`` training steps on the batch ``(x, y)``, after one untimed warm-up step."""
    for i in range(steps + 1):
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = seq_loss(model(x, timesteps), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare_lif(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    fused_fn = neuron.lif_multistep
    results: dict[str, list[float]] = {}
    try:
        for label in ("fused", "reference", "fused", "reference"):  # interleaved to even out machine noise
            reference = lambda x, *a, **k: neuron.lif_reference(x, *a, **k)[0]  # noqa: E731
            neuron.lif_multistep = fused_fn if label == "fused" else reference
            results.setdefault(label, []).append(images_per_second(args, device))
    finally:
        neuron.lif_multistep = fused_fn
    return {k: max(v) for k, v in results.items()}


def compare_bn(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    results: dict[str, list[float]] = {}
    for mode in ("per-step", "pooled", "per-step", "pooled"):
        results.setdefault(mode, []).append(images_per_second(args, device, mode))
    return {k: max(v) for k, v in results.items()}


# (model, image side, batch) per device: the rows of the twin comparison
TWIN_ROWS = {"cpu": (("convnet", 28, 128), ("vgg16", 28, 32)), "cuda": (("vgg16", 32, 128),)}


def worker(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process: prints ``{"img_s", "peak_mb"}`` as JSON."""
    import json
    import resource

    device = resolve_device(args.device)
    torch.manual_seed(0)
    c = 1 if args.side == 28 else 3
    ours = create_model(ModelConfig(model=args.model), c, args.side, 10)
    model = ours
    if args.worker != "ours":
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).parent))
        from twin import Twin

        model = Twin(ours, args.worker[-1])
    model = model.to(device)
    opt = make_optimizer(model, TrainConfig())
    x = torch.randn(args.batch_size, c, args.side, args.side, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    rss0 = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    seconds = timed_steps(model, opt, x, y, args.timesteps, args.steps, device)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
    print(json.dumps({"img_s": args.steps * args.batch_size / seconds, "peak_mb": peak}))


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        import os

        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def check_twin(args: argparse.Namespace, device: torch.device, steps: int = 50) -> dict:
    """Correctness first: ours and the single-step twin from the same init on the same batches (real-valued random
    images, fixed labels), ``steps`` SGD steps each; the losses should agree within float noise."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from twin import Twin

    losses = {}
    for variant in ("ours", "twin"):
        torch.manual_seed(0)
        ours = create_model(ModelConfig(model="convnet"), 1, 28, 10)
        model = (ours if variant == "ours" else Twin(ours, "s")).to(device)
        opt = make_optimizer(model, TrainConfig(lr=0.05))
        gen = torch.Generator().manual_seed(1)
        out = []
        for _ in range(steps):
            x = torch.rand(32, 1, 28, 28, generator=gen).to(device)
            y = (x.mean((1, 2, 3)) * 1e4).long().remainder(10)
            loss = seq_loss(model(x, 5), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(loss.item())
        losses[variant] = out
    diffs = [abs(a - b) for a, b in zip(losses["ours"], losses["twin"])]
    same = next((i for i, d in enumerate(diffs) if d > 1e-5), steps)
    result = {"steps": steps, "steps_equal_to_1e-5": same, "max_abs_loss_diff": max(diffs),
              "first_loss": losses["ours"][0], "last_loss_ours": losses["ours"][-1],
              "last_loss_twin": losses["twin"][-1]}
    print(f"check: convnet T=5 from one init on the same batches: losses equal (within 1e-5) for the first {same} of "
          f"{steps} steps, then float rounding flips spikes and the runs drift apart (max |difference| "
          f"{result['max_abs_loss_diff']:.2e}; last loss {result['last_loss_ours']:.4f} ours, "
          f"{result['last_loss_twin']:.4f} twin)", flush=True)
    return result


def compare_twin(args: argparse.Namespace, device: torch.device) -> list[dict]:
    import json
    import subprocess
    import sys

    steps, repeats = (3, 1) if args.quick else (10, 2)
    rows = []
    for model, side, batch in TWIN_ROWS[device.type]:
        for t in (5, 3):
            got: dict[str, list[dict]] = {}
            for _ in range(repeats):
                for variant in ("ours", "twin-s", "twin-m"):  # interleaved to even out machine noise
                    cmd = [sys.executable, __file__, "--worker", variant, "--model", model, "--side", str(side),
                           "--timesteps", str(t), "--batch-size", str(batch), "--steps", str(steps),
                           "--device", device.type]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
                    got.setdefault(variant, []).append(json.loads(out))
            ours = max(got["ours"], key=lambda r: r["img_s"])
            twin = max((max(got[v], key=lambda r: r["img_s"]) for v in ("twin-s", "twin-m")), key=lambda r: r["img_s"])
            mode = "single-step" if twin in got["twin-s"] else "multi-step"
            rows.append({"device": device.type, "model": model, "side": side, "batch": batch, "timesteps": t,
                         "ours_img_s": ours["img_s"], "twin_img_s": twin["img_s"], "twin_mode": mode,
                         "speedup": ours["img_s"] / twin["img_s"], "ours_peak_mb": ours["peak_mb"],
                         "twin_peak_mb": twin["peak_mb"], "memory_ratio": ours["peak_mb"] / max(twin["peak_mb"], 1e-9),
                         "threads": torch.get_num_threads()})
            r = rows[-1]
            print(f"{device.type} {model} {side}px B={batch} T={t}: ours {r['ours_img_s']:.0f} img/s, twin "
                  f"{r['twin_img_s']:.0f} img/s ({mode}), speed-up {r['speedup']:.2f}x; peak {r['ours_peak_mb']:.0f} "
                  f"vs {r['twin_peak_mb']:.0f} MB, memory ratio {r['memory_ratio']:.2f}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compare", default="twin", choices=("twin", "lif", "bn"))
    p.add_argument("--quick", action="store_true", help="twin: 3 steps, one repeat (a few minutes on 2 cores)")
    p.add_argument("--out", metavar="FILE.json", help="twin: write the rows here")
    p.add_argument("--worker", choices=("ours", "twin-s", "twin-m"), help=argparse.SUPPRESS)
    p.add_argument("--side", type=int, default=28, help=argparse.SUPPRESS)
    p.add_argument("--model", default="convnet", choices=sorted(SHAPES))
    p.add_argument("--timesteps", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    if args.worker:
        return worker(args)
    device = resolve_device(args.device)
    if args.compare == "twin":
        import json

        check = check_twin(args, device)
        rows = compare_twin(args, device)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump({"check": check, "rows": rows}, fh, indent=1)
        return None
    res = compare_lif(args, device) if args.compare == "lif" else compare_bn(args, device)
    (a, ra), (b, rb) = res.items()
    print(f"{args.model} T={args.timesteps} B={args.batch_size} on {device} ({torch.get_num_threads()} threads): "
          f"{a} {ra:.0f} img/s, {b} {rb:.0f} img/s, ratio {ra / rb:.2f}x")


if __name__ == "__main__":
    main()
