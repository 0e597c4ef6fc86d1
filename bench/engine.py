"""Training-step throughput, measured side by side (interleaved) in one run.

Default (``--compare twin``): our engine against a spikingjelly 2.0 twin of the same network (bench/twin.py), per
device, model and T: training images/s and peak memory (CPU: peak RSS growth of a fresh process; CUDA:
``max_memory_allocated``), each variant in its own process, after a warm-up step, interleaved, three times (best of
three, as ``timeit``; the spread of the ratios within a repeat is kept too). Each side's figure is its faster
variant: ours with the eager or the compiled LIF kernel (``--lif-kernel``; the compile time is printed), the twin in
its single-step paper-code loop or its multi-step mode. First a correctness check (losses of 50 steps from one init,
against the noise floor of float rounding), last the end-to-end figure: ``snnlth train`` against the bare step.
``--quick`` is a few minutes on 2 cores; ``--out FILE.json`` keeps ``{"check", "rows", "e2e"}``, rows holding
``ours_img_s``, ``twin_img_s``, ``speedup`` (with ``speedup_min``/``speedup_max``), ``ours_peak_mb``,
``twin_peak_mb``, ``memory_ratio``. ``--models vgg16`` keeps only those rows, ``--amp`` runs both sides under
bf16 autocast (rows marked ``"amp": true``) and ``--bn-time pooled`` builds ours with BatchNorm over all T·B samples
(what the twin's multi-step mode does); each skips the check and the end-to-end figure.
``--compare lif`` (fused vs reference LIF), ``bn`` (per-step vs pooled BN) and ``e2e`` run one part alone.

    .venv/bin/python bench/engine.py [--quick] [--out FILE.json] [--device auto] [--models vgg16] [--amp]
    .venv/bin/python bench/engine.py --compare lif|bn|e2e [--model convnet] [--timesteps 5] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import time

import torch

import snnlth.snn.neuron as neuron
from snnlth.config import ModelConfig, RuntimeConfig, TrainConfig
from snnlth.engine.evaluate import autocast, seq_loss
from snnlth.engine.fastpath import prepare
from snnlth.engine.graphed import GraphedStep, graph_blocker
from snnlth.engine.layouts import set_conv_layout
from snnlth.engine.optim import make_optimizer, resolve_device
from snnlth.models import create_model

SHAPES = {"convnet": (1, 28), "lenet300": (1, 28), "vgg16": (3, 32), "resnet19": (3, 32)}


def images_per_second(args: argparse.Namespace, device: torch.device, bn_time: str = "per-step") -> float:
    torch.manual_seed(0)
    c, s = SHAPES[args.model]
    model = create_model(ModelConfig(model=args.model, bn_time=bn_time), c, s, 10).to(device)
    set_conv_layout(model, device)  # what the engine applies when training starts
    opt = make_optimizer(model, TrainConfig())
    x = torch.randn(args.batch_size, c, s, s, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    return args.steps * args.batch_size / timed_steps(model, opt, x, y, args.timesteps, args.steps, device)


def timed_steps(model, opt, x: torch.Tensor, y: torch.Tensor, timesteps: int, steps: int,
                device: torch.device, amp: bool = False, graphed=None) -> float:
    """Seconds of ``steps`` training steps on the batch ``(x, y)``, after one untimed warm-up step (bf16 autocast of
    the forward and the loss with ``amp``, as the engine's ``--amp``); with ``graphed`` (a
    :class:`snnlth.engine.graphed.GraphedStep`) the step is replayed as the engine does on CUDA."""
    start = time.perf_counter()
    for i in range(steps + 1):
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        if graphed is None or graphed.step(x, y, timesteps) is None:
            with autocast(device, amp):
                loss = seq_loss(model(x, timesteps), y)
            opt.zero_grad()
            loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _reference_lif(x_seq: torch.Tensor, params: neuron.LIFParams = neuron.LIFParams(), kernel=None) -> torch.Tensor:
    """``lif_multistep`` as plain autograd (snnlth.snn.neuron.lif_reference), for the LIF layers to call instead."""
    p = params
    return neuron.lif_reference(x_seq, p.tau, p.v_threshold, p.surrogate, p.alpha, p.detach_reset)[0]


def compare_lif(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    fused_fn = neuron.lif_multistep
    results: dict[str, list[float]] = {}
    try:
        for label in ("fused", "reference", "fused", "reference"):  # interleaved to even out machine noise
            neuron.lif_multistep = fused_fn if label == "fused" else _reference_lif
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
TWIN_ROWS = {"cpu": (("convnet", 28, 128), ("vgg16", 28, 32)), "cuda": (("vgg16", 32, 128), ("resnet19", 32, 128))}
# ours: eager LIF (the CPU default) and compiled LIF (--lif-kernel compiled; the CUDA default); twin: spikingjelly
# single-step (the paper's code) and multi-step. Each side's figure is its faster variant.
OURS, TWINS = ("ours", "ours-c"), ("twin-s", "twin-m")


def _twin(ours, step_mode: str):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from twin import make_twin

    return make_twin(ours, step_mode)


def worker(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process: prints ``{"img_s", "peak_mb"}`` as JSON."""
    import json
    import resource

    device = resolve_device(args.device)
    torch.manual_seed(0)
    c = 1 if args.side == 28 else 3
    ours = create_model(ModelConfig(model=args.model, bn_time=args.bn_time), c, args.side, 10)
    model = ours if args.worker in OURS else _twin(ours, args.worker[-1])
    model = model.to(device)
    if args.worker in OURS:  # what snnlth's engine applies when training starts (snnlth.engine.fastpath)
        prepare(model, RuntimeConfig(lif_kernel="compiled" if args.worker == "ours-c" else "eager"), device)
    opt = make_optimizer(model, TrainConfig())
    x = torch.randn(args.batch_size, c, args.side, args.side, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    start = time.perf_counter()
    # compiles, if anything does; on CUDA at the full batch, whose sizes the compiler tunes its kernels for (the
    # memory peak is reset below); on CPU at two images, so the peak RSS growth below still sees the full batch
    warm = (x, y) if device.type == "cuda" else (x[:2], y[:2])
    timed_steps(model, opt, *warm, args.timesteps, 0, device, args.amp)
    warmup = time.perf_counter() - start
    rss0 = _rss_mb()  # peak memory: growth from here, over a warm-up step and the timed steps at the full batch
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    graphed = None
    if args.worker in OURS and RuntimeConfig().cuda_graph and graph_blocker(model, device, False) is None:
        graphed = GraphedStep(model, model, args.amp)  # the engine's CUDA step (snnlth.engine.loop.fit)
    seconds = timed_steps(model, opt, x, y, args.timesteps, args.steps, device, args.amp, graphed)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
    print(json.dumps({"img_s": args.steps * args.batch_size / seconds, "peak_mb": peak, "warmup_s": warmup,
                      "cuda_graph": graphed is not None and graphed.failed is None}))


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        import os

        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def check_twin(args: argparse.Namespace, device: torch.device, steps: int = 50) -> dict:
    """Correctness first: ours and the single-step twin from the same init on the same batches (real-valued random
    images, fixed labels), ``steps`` SGD steps each. Spikes are thresholds, so float rounding flips one now and then
    and two correct implementations drift apart; the noise floor is the drift between two implementations of our
    own engine that differ only in rounding (the fused LIF and the plain-autograd reference). The twin agrees
    within noise when its largest loss difference from ours is at most twice that floor."""
    fused_fn = neuron.lif_multistep
    losses = {}
    try:
        for variant in ("ours", "ours-reference-lif", "twin"):
            torch.manual_seed(0)
            ours = create_model(ModelConfig(model="convnet"), 1, 28, 10)
            model = (_twin(ours, "s") if variant == "twin" else ours).to(device)
            neuron.lif_multistep = _reference_lif if variant == "ours-reference-lif" else fused_fn
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
    finally:
        neuron.lif_multistep = fused_fn

    def drift(a: str, b: str) -> list[float]:
        return [abs(u - v) for u, v in zip(losses[a], losses[b])]

    twin, noise = drift("ours", "twin"), drift("ours", "ours-reference-lif")
    same = next((i for i, d in enumerate(twin) if d > 1e-5), steps)
    result = {"steps": steps, "steps_equal_to_1e-5": same, "max_abs_loss_diff": max(twin),
              "noise_max_abs_loss_diff": max(noise), "within_noise": max(twin) <= 2 * max(noise) + 1e-5,
              "first_loss": losses["ours"][0], "last_loss_ours": losses["ours"][-1],
              "last_loss_twin": losses["twin"][-1]}
    print(f"check: convnet T=5, one init, the same {steps} batches: ours and the twin give equal losses (within 1e-5) "
          f"for the first {same} steps, then drift by at most {result['max_abs_loss_diff']:.2e}; our engine with "
          f"its reference LIF drifts from ours by {result['noise_max_abs_loss_diff']:.2e} (float rounding flips "
          f"spikes): {'within' if result['within_noise'] else 'NOT within'} noise. Last loss "
          f"{result['last_loss_ours']:.4f} ours, {result['last_loss_twin']:.4f} twin", flush=True)
    return result


def compare_twin(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Per row and T, every variant in a fresh process, interleaved, ``repeats`` times. A variant's figure is its
    best repeat (as ``timeit``: on a shared machine other work only ever slows a run down, so the fastest repeat is
    the closest to what the code can do); each side's figure is its faster variant. ``speedup_min``/``speedup_max``
    are the lowest and highest ratio of the two chosen variants within one repeat: the spread the noise allows."""
    import json
    import statistics
    import subprocess
    import sys

    steps, repeats = (3, 1) if args.quick else (8, 3)
    if device.type == "cuda":  # a CUDA step takes milliseconds: more of them, for a stable figure
        steps *= 10
    rows = []
    table = [r for r in TWIN_ROWS[device.type] if not args.models or r[0] in args.models.split(",")]
    for model, side, batch in table:
        for t in (5, 3):
            got: dict[str, list[dict]] = {}
            for _ in range(repeats):
                for variant in (*OURS, *TWINS):  # interleaved to even out machine noise
                    cmd = [sys.executable, __file__, "--worker", variant, "--model", model, "--side", str(side),
                           "--timesteps", str(t), "--batch-size", str(batch), "--steps", str(steps),
                           "--device", device.type, "--bn-time", args.bn_time, *(["--amp"] if args.amp else [])]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
                    got.setdefault(variant, []).append(json.loads(out))
            best = {v: max(r["img_s"] for r in got[v]) for v in got}
            ours_v, twin_v = max(OURS, key=best.get), max(TWINS, key=best.get)
            ratios = [o["img_s"] / w["img_s"] for o, w in zip(got[ours_v], got[twin_v])]
            ours_mb = statistics.median(r["peak_mb"] for r in got[ours_v])
            twin_mb = statistics.median(r["peak_mb"] for r in got[twin_v])
            mode = "single-step" if twin_v == "twin-s" else "multi-step"
            ours_mode = "compiled LIF" if ours_v == "ours-c" else "eager LIF"
            rows.append({"device": device.type, "model": model, "side": side, "batch": batch, "timesteps": t,
                         "amp": args.amp, "bn_time": args.bn_time, "ours_img_s": best[ours_v],
                         "twin_img_s": best[twin_v], "twin_mode": mode,
                         "ours_mode": ours_mode, "ours_eager_img_s": best["ours"],
                         "ours_compiled_img_s": best["ours-c"],
                         "compile_seconds": statistics.median(r["warmup_s"] for r in got["ours-c"]),
                         "speedup": best[ours_v] / best[twin_v], "speedup_min": min(ratios),
                         "speedup_max": max(ratios), "ours_peak_mb": ours_mb, "twin_peak_mb": twin_mb,
                         "memory_ratio": ours_mb / max(twin_mb, 1e-9), "threads": torch.get_num_threads(),
                         "raw_img_s": {v: [r["img_s"] for r in got[v]] for v in got}})
            r = rows[-1]
            print(f"{device.type} {model} {side}px B={batch} T={t}{' bf16' if args.amp else ''}: ours "
                  f"{r['ours_img_s']:.0f} img/s ({ours_mode}; eager {r['ours_eager_img_s']:.0f}, compiled "
                  f"{r['ours_compiled_img_s']:.0f} after a {r['compile_seconds']:.0f} s compile), twin "
                  f"{r['twin_img_s']:.0f} img/s ({mode}), speed-up {r['speedup']:.2f}x (repeats "
                  f"{r['speedup_min']:.2f}-{r['speedup_max']:.2f}); peak {r['ours_peak_mb']:.0f} vs "
                  f"{r['twin_peak_mb']:.0f} MB, memory ratio {r['memory_ratio']:.2f}", flush=True)
    return rows


def compare_e2e(args: argparse.Namespace, device: torch.device) -> dict:
    """``snnlth train`` (real Fashion-MNIST, augmentation, mask-free training, per-epoch evaluation and checkpoint
    excluded: its train images/s) against the bare training step of the same model, batch and T on a fixed random
    batch (bench worker ``ours``), interleaved in fresh processes; the train figure is taken from epoch 2 of 2."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    train_images = 2560 if args.quick else 10240
    got: dict[str, list[float]] = {"bare": [], "train": []}
    for _ in range(1 if args.quick else 2):
        cmd = [sys.executable, __file__, "--worker", "ours", "--model", "convnet", "--side", "28", "--timesteps", "5",
               "--batch-size", "128", "--steps", str(train_images // 128), "--device", device.type]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        got["bare"].append(json.loads(out)["img_s"])
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "snnlth", "train", "--model", "convnet", "--timesteps", "5", "--batch-size",
                   "128", "--epochs", "2", "--train-subset", str(train_images), "--test-subset", "1000",
                   "--no-progress", "--device", device.type, "--out", str(Path(tmp) / "run")]
            subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
            got["train"].append(rows[-1]["images_per_second"])
    bare, train = max(got["bare"]), max(got["train"])
    print(f"{device.type} convnet 28px B=128 T=5: bare step {bare:.0f} img/s, snnlth train {train:.0f} img/s "
          f"({100 * train / bare:.0f} % of the bare step)", flush=True)
    return {"bare_img_s": bare, "train_img_s": train, "ratio": train / bare}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compare", default="twin", choices=("twin", "lif", "bn", "e2e"))
    p.add_argument("--quick", action="store_true", help="twin: 3 steps, one repeat (a few minutes on 2 cores)")
    p.add_argument("--out", metavar="FILE.json", help="twin: write the rows here")
    p.add_argument("--worker", choices=(*OURS, *TWINS), help=argparse.SUPPRESS)
    p.add_argument("--side", type=int, default=28, help=argparse.SUPPRESS)
    p.add_argument("--model", default="convnet", choices=sorted(SHAPES))
    p.add_argument("--timesteps", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true", help="twin: bf16 autocast on both sides (the engine's --amp)")
    p.add_argument("--models", default="", help="twin: only these rows' models (comma-separated; default all)")
    p.add_argument("--bn-time", default="per-step", choices=("per-step", "pooled"),
                   help="twin: our BatchNorm over time (pooled is what the twin's multi-step mode does)")
    args = p.parse_args()
    if args.worker:
        return worker(args)
    device = resolve_device(args.device)
    if args.compare == "twin":
        import json

        # the correctness check and the end-to-end figure belong to the plain full run
        full = not (args.models or args.amp or args.bn_time != "per-step")
        check = check_twin(args, device) if full else None
        rows = compare_twin(args, device)
        e2e = compare_e2e(args, device) if full else None
        if args.out:
            with open(args.out, "w") as fh:
                json.dump({"check": check, "rows": rows, "e2e": e2e}, fh, indent=1)
        return None
    if args.compare == "e2e":
        compare_e2e(args, device)
        return None
    res = compare_lif(args, device) if args.compare == "lif" else compare_bn(args, device)
    (a, ra), (b, rb) = res.items()
    print(f"{args.model} T={args.timesteps} B={args.batch_size} on {device} ({torch.get_num_threads()} threads): "
          f"{a} {ra:.0f} img/s, {b} {rb:.0f} img/s, ratio {ra / rb:.2f}x")


if __name__ == "__main__":
    main()
