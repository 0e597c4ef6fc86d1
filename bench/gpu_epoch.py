"""Seconds per CIFAR-10 training epoch (50,000 images, 32×32, B=128) of VGG16 and ResNet19 at T=5 and T=3: our engine
(its fast settings) against the spikingjelly twin (bench/twin.py, the faster of its single- and multi-step modes),
both under bf16 autocast on CUDA.

The epoch runs through the engine's own data path (device-resident uint8 images, per-epoch random draws, on-device
crop/flip/Cutout) from the real CIFAR-10 when ``--data-dir`` (or ``$SNNLTH_DATA``) holds it, else from synthetic
images of the same shape; the twin gets the same batches. Each variant runs in a fresh process: one untimed warm-up
epoch slice (compiles), then ``--batches`` timed batches scaled to a whole epoch. The GPU's name is printed.

    .venv/bin/python bench/gpu_epoch.py [--out FILE.json] [--batches 100]
    .venv/bin/python bench/gpu_epoch.py --device cpu --batches 2 --models vgg16 --timesteps 3   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

EPOCH_IMAGES, BATCH = 50_000, 128
OURS = ("ours",)
TWINS = ("twin-s", "twin-m")


def _data(device: torch.device, data_dir: str | None):
    """CIFAR-10 as the engine holds it, or synthetic images of the same shape and a flag saying which."""
    from snnlth.config import DataConfig
    from snnlth.data.catalog import DATASETS
    from snnlth.data.loader import DataBundle, load_data
    from snnlth.errors import DataError

    try:
        return load_data(DataConfig(dataset="cifar10", data_dir=data_dir), device), "CIFAR-10"
    except (DataError, FileNotFoundError, OSError):
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (EPOCH_IMAGES, 3, 32, 32), dtype=torch.uint8, generator=gen)
        y = torch.randint(0, 10, (EPOCH_IMAGES,), generator=gen)
        bundle = DataBundle(DATASETS.get("cifar10"), x.to(device), y.to(device), x[:1000].to(device),
                            y[:1000].to(device), image_size=32, augment=True)
        return bundle, "synthetic (CIFAR-10 not found)"


def worker(args: argparse.Namespace) -> None:
    """One variant in this fresh process: prints ``{"epoch_s", "warmup_s", "data"}`` as JSON."""
    from snnlth.config import ModelConfig, TrainConfig
    from snnlth.engine.evaluate import autocast, seq_loss
    from snnlth.engine.fastpath import prepare
    from snnlth.engine.optim import make_optimizer, resolve_device
    from snnlth.models import create_model

    device = resolve_device(args.device)
    data, kind = _data(device, args.data_dir)
    torch.manual_seed(0)
    ours = create_model(ModelConfig(model=args.model), 3, 32, 10).to(device)
    fast = args.worker == "ours" and device.type == "cuda"
    # both sides train under the same bf16 autocast on CUDA (same precision); compile, channels-last and the fused
    # LIF kernel are our engine's own
    cfg = TrainConfig(batch_size=BATCH, amp=device.type == "cuda", compile=fast and args.compile, channels_last=fast,
                      lif_kernel="auto")
    if args.worker == "ours":
        model = ours
        forward = prepare(model, cfg, device)
    else:
        from twin import make_twin

        model = forward = make_twin(ours, args.worker[-1]).to(device)
    opt = make_optimizer(model, cfg)
    model.train()

    def run(batches: int, epoch: int) -> None:
        for i, (x, y) in enumerate(data.train_batches(BATCH, 0, 0, epoch)):
            if i == batches:
                break
            with autocast(device, cfg.amp):
                logits = forward(x, args.timesteps)
            loss = seq_loss(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def timed(batches: int, epoch: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run(batches, epoch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    warmup = timed(max(3, args.batches // 10), 0)
    seconds = timed(args.batches, 1)
    epoch_s = seconds / args.batches * (EPOCH_IMAGES // BATCH)
    print(json.dumps({"epoch_s": epoch_s, "warmup_s": warmup, "data": kind,
                      "settings": {"amp": cfg.amp, "compile": cfg.compile, "channels_last": cfg.channels_last}}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", metavar="FILE.json")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir")
    p.add_argument("--batches", type=int, default=100, help="timed batches per variant (scaled to an epoch)")
    p.add_argument("--models", nargs="+", default=["vgg16", "resnet19"], choices=["vgg16", "resnet19"])
    p.add_argument("--timesteps", nargs="+", type=int, default=[5, 3])
    p.add_argument("--no-compile", dest="compile", action="store_false", help="ours without torch.compile")
    p.add_argument("--worker", choices=(*OURS, *TWINS), help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.timesteps = args.timesteps[0]
        return worker(args)
    from snnlth.engine.optim import resolve_device

    device = resolve_device(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (no GPU)"
    print(f"device: {gpu}; torch {torch.__version__}", flush=True)
    rows = []
    for model in args.models:
        for t in args.timesteps:
            got = {}
            for variant in (*OURS, *TWINS):
                cmd = [sys.executable, __file__, "--worker", variant, "--model", model, "--timesteps", str(t),
                       "--batches", str(args.batches), "--device", device.type]
                cmd += ["--data-dir", args.data_dir] if args.data_dir else []
                cmd += [] if args.compile else ["--no-compile"]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{model} T={t} {variant}: failed\n{done.stderr[-2000:]}", flush=True)
                    continue
                got[variant] = json.loads(done.stdout.splitlines()[-1])
            if "ours" not in got or not any(v in got for v in TWINS):
                continue
            twin_variant = min((v for v in TWINS if v in got), key=lambda v: got[v]["epoch_s"])
            ours, twin = got["ours"], got[twin_variant]
            rows.append({"device": gpu, "model": model, "timesteps": t, "batch": BATCH, "data": ours["data"],
                         "ours_epoch_s": ours["epoch_s"], "twin_epoch_s": twin["epoch_s"],
                         "speedup": twin["epoch_s"] / ours["epoch_s"], "twin_mode": twin_variant,
                         "ours_warmup_s": ours["warmup_s"], "ours_settings": ours["settings"]})
            r = rows[-1]
            print(f"{gpu} {model} T={t} B={BATCH} ({r['data']}): ours {r['ours_epoch_s']:.1f} s/epoch, twin "
                  f"{r['twin_epoch_s']:.1f} s/epoch ({twin_variant}), speed-up {r['speedup']:.2f}x "
                  f"(ours' warm-up incl. compile {r['ours_warmup_s']:.0f} s; {r['ours_settings']})", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"device": gpu, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
