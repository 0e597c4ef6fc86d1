"""Where a CUDA training step's time goes, in one process: images/s of our step and the spikingjelly twin's, eager and
replayed as a CUDA graph (snnlth.engine.graphed), with cuDNN autotuning off and on, bf16 + channels-last, pooled BN;
the profiler's GPU-busy time per step against the wall time (a launch-bound step has the GPU idle); the data path
alone; and a check that the graphed step computes what the eager one does.

    python bench/gpu_probe.py [--steps 20] [--out probe.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from snnlth.config import ModelConfig, RuntimeConfig, TrainConfig  # noqa: E402
from snnlth.engine.evaluate import autocast, seq_loss  # noqa: E402
from snnlth.engine.fastpath import prepare  # noqa: E402
from snnlth.engine.graphed import GraphedStep  # noqa: E402
from snnlth.engine.optim import make_optimizer  # noqa: E402
from snnlth.models import create_model  # noqa: E402

DEV = torch.device(os.environ.get("PROBE_DEVICE", "cuda"))


def build(model: str, side: str, bn_time: str = "per-step", amp: bool = False, cl: bool = False):
    torch.manual_seed(0)
    ours = create_model(ModelConfig(model=model, bn_time=bn_time), 3, 32, 10).to(DEV)
    if side == "ours":
        prepare(ours, RuntimeConfig(lif_kernel="compiled", channels_last=cl), DEV)
        return ours
    from twin import make_twin

    twin = make_twin(ours, "m").to(DEV)
    if cl:
        twin.to(memory_format=torch.channels_last)
    return twin


def run_steps(model, opt, x, y, t, amp, graph: GraphedStep | None, steps: int) -> None:
    for _ in range(steps):
        got = graph.step(x, y, t) if graph is not None else None
        if got is None:
            with autocast(DEV, amp):
                logits = model(x, t)
            loss = seq_loss(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()


def measure(name: str, model_name: str, side: str, t: int, steps: int, *, graphed=False, amp=False, cl=False,
            bn_time="per-step", profile=False, batch=128) -> dict:
    model = build(model_name, side, bn_time, amp, cl)
    opt = make_optimizer(model, TrainConfig())
    x = torch.randn(batch, 3, 32, 32, device=DEV)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=DEV)
    graph = GraphedStep(model, model, amp) if graphed else None
    t0 = time.perf_counter()
    run_steps(model, opt, x, y, t, amp, graph, 3)
    torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_steps(model, opt, x, y, t, amp, graph, steps)
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / steps
    row = {"name": name, "model": model_name, "T": t, "img_s": batch / wall, "ms_step": 1e3 * wall,
           "warmup_s": warm, "graph_failed": graph.failed if graph else None,
           "peak_mb": torch.cuda.max_memory_allocated() / 2**20}
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as prof_ctx

        with prof_ctx(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            run_steps(model, opt, x, y, t, amp, graph, 3)
            torch.cuda.synchronize()
        events = prof.key_averages()

        def dev_time(e):
            return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)

        busy = sum(dev_time(e) for e in events) / 3 / 1e3
        kernels = sum(e.count for e in events if dev_time(e) > 0) / 3
        row.update(gpu_busy_ms_step=busy, kernels_per_step=kernels)
        top = sorted(events, key=dev_time, reverse=True)[:14]
        row["top"] = [(e.key[:90], round(dev_time(e) / 3 / 1e3, 3), e.count // 3) for e in top]
    print(json.dumps({k: v for k, v in row.items() if k != "top"}), flush=True)
    for line in row.get("top", []):
        print("    ", line, flush=True)
    del model, opt, graph
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return row


def check_graph(model_name: str, t: int, amp: bool) -> dict:
    """Losses and gradients of 3 steps, eager vs graphed, from the same init and batches."""
    a = build(model_name, "ours", amp=amp)
    b = copy.deepcopy(a)
    oa, ob = make_optimizer(a, TrainConfig()), make_optimizer(b, TrainConfig())
    graph = GraphedStep(b, b, amp)
    gen = torch.Generator(device=DEV).manual_seed(1)
    out = {"model": model_name, "T": t, "amp": amp, "loss_diff": [], "grad_rel_diff": []}
    for _ in range(3):
        x = torch.randn(128, 3, 32, 32, device=DEV, generator=gen)
        y = torch.randint(0, 10, (128,), device=DEV, generator=gen)
        with autocast(DEV, amp):
            la = seq_loss(a(x, t), y)
        oa.zero_grad(set_to_none=True)
        la.backward()
        lb, _ = graph.step(x, y, t)
        num = max((pa.grad - pb.grad).abs().max().item() for pa, pb in zip(a.parameters(), b.parameters()))
        den = max(pa.grad.abs().max().item() for pa in a.parameters())
        out["loss_diff"].append(abs(la.item() - lb.item()))
        out["grad_rel_diff"].append(num / den)
        oa.step()
        ob.step()
    bufs = max((ba.float() - bb.float()).abs().max().item() for ba, bb in zip(a.buffers(), b.buffers()))
    out["buffer_diff"] = bufs
    out["captures"] = graph.captures
    out["failed"] = graph.failed
    print(json.dumps(out), flush=True)
    return out


def check_fused(shape: tuple[int, ...], dtype: torch.dtype, cl: bool, residual: bool) -> dict:
    """One BN+LIF layer, the compiled fused kernel (snnlth.snn.fused) against PyTorch's BatchNorm and the eager LIF,
    on the same input: spikes that differ (float rounding of the statistics flips a spike now and then), the
    input, residual and weight gradients' largest difference relative to their largest value, running stats."""
    from snnlth.engine.kernels import CompiledKernel
    from snnlth.snn.fused import bn_lif
    from snnlth.snn.layers import SeqBatchNorm2d
    from snnlth.snn.neuron import LIF

    torch.manual_seed(0)
    bn = SeqBatchNorm2d(shape[2]).to(DEV)
    bn2 = copy.deepcopy(bn)
    lif = LIF()
    lif.kernel = CompiledKernel()
    x = (torch.randn(shape, device=DEV) * 0.7 + 0.3).to(dtype)
    if cl:
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(shape)
    r = torch.randn(shape, device=DEV).to(dtype) if residual else None
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ra = r.clone().requires_grad_() if residual else None
    rb = r.clone().requires_grad_() if residual else None
    a = bn_lif(bn, lif, xa, ra)
    b = LIF()(bn2(xb) + rb) if residual else LIF()(bn2(xb))
    g = torch.randn(shape, device=DEV).to(dtype)
    a.backward(g)
    b.backward(g)

    def rel(u, v):
        return ((u.float() - v.float()).abs().max() / v.float().abs().max()).item()

    out = {"check": "fused BN+LIF layer vs BatchNorm2d then LIF", "shape": list(shape), "dtype": str(dtype),
           "channels_last": cl, "residual": residual, "spikes_differ": int((a != b).sum()), "spikes": a.numel(),
           "same_strides": a.stride() == b.stride(), "grad_x_rel": rel(xa.grad, xb.grad),
           "grad_w_rel": rel(bn.weight.grad, bn2.weight.grad), "grad_b_rel": rel(bn.bias.grad, bn2.bias.grad),
           "running_var_rel": rel(bn.running_var, bn2.running_var)}
    if residual:
        out["grad_r_rel"] = rel(ra.grad, rb.grad)
    print(json.dumps(out), flush=True)
    return out


def data_path(batches: int = 60) -> dict:
    from gpu_epoch import _data

    data, kind = _data(DEV, None)
    it = data.train_batches(128, 0, 0, 0)
    next(it)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = 0
    for i, (_x, y) in enumerate(it):
        if i == batches:
            break
        n += len(y)
    torch.cuda.synchronize()
    row = {"name": "data path alone", "data": kind, "img_s": n / (time.perf_counter() - t0)}
    print(json.dumps(row), flush=True)
    return row


def guarded(rows: list, fn) -> None:
    try:
        rows.append(fn())
    except Exception as exc:  # noqa: BLE001 - one failed variant must not cost the others
        print(f"FAILED: {type(exc).__name__}: {str(exc)[:400]}", flush=True)
        torch.cuda.empty_cache()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out")
    p.add_argument("--part", default="all")
    args = p.parse_args()
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    rows: list[dict] = []
    s = args.steps
    if args.part == "check":
        guarded(rows, lambda: check_fused((5, 128, 64, 32, 32), torch.float32, False, False))
        guarded(rows, lambda: check_fused((5, 128, 256, 8, 8), torch.float32, False, True))
        guarded(rows, lambda: check_fused((5, 128, 128, 16, 16), torch.bfloat16, True, False))
        guarded(rows, lambda: check_fused((3, 128, 512, 2, 2), torch.bfloat16, True, True))
        guarded(rows, lambda: check_graph("vgg16", 5, False))
        guarded(rows, lambda: measure("ours bf16 graph", "vgg16", "ours", 5, s, graphed=True, amp=True,
                                      profile=True))
        guarded(rows, lambda: measure("ours bf16+cl graph", "vgg16", "ours", 5, s, graphed=True, amp=True,
                                      cl=True, profile=True))
        guarded(rows, lambda: measure("ours graph", "vgg16", "ours", 5, s, graphed=True, profile=True))
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=1))
        return
    torch.backends.cudnn.benchmark = False
    guarded(rows, lambda: check_graph("vgg16", 5, False))
    guarded(rows, lambda: measure("ours eager", "vgg16", "ours", 5, s, profile=True))
    guarded(rows, lambda: measure("ours graph", "vgg16", "ours", 5, s, graphed=True, profile=True))
    guarded(rows, lambda: measure("twin-m eager", "vgg16", "twin", 5, s, profile=True))
    guarded(rows, lambda: measure("twin-m graph", "vgg16", "twin", 5, s, graphed=True))
    guarded(rows, lambda: measure("ours pooled graph", "vgg16", "ours", 5, s, graphed=True, bn_time="pooled"))
    guarded(rows, lambda: measure("ours bf16+cl graph", "vgg16", "ours", 5, s, graphed=True, amp=True, cl=True,
                                  profile=True))
    guarded(rows, lambda: data_path())
    torch.backends.cudnn.benchmark = True
    guarded(rows, lambda: measure("bench: ours graph", "vgg16", "ours", 5, s, graphed=True))
    guarded(rows, lambda: measure("bench: twin-m eager", "vgg16", "twin", 5, s))
    guarded(rows, lambda: measure("bench: ours bf16+cl graph", "vgg16", "ours", 5, s, graphed=True, amp=True, cl=True))
    guarded(rows, lambda: measure("bench: ours bf16 graph", "vgg16", "ours", 5, s, graphed=True, amp=True))
    guarded(rows, lambda: measure("bench: ours eager", "resnet19", "ours", 5, s))
    guarded(rows, lambda: measure("bench: ours graph", "resnet19", "ours", 5, s, graphed=True, profile=True))
    guarded(rows, lambda: measure("bench: twin-m eager", "resnet19", "twin", 5, s))
    guarded(rows, lambda: measure("bench: ours graph", "vgg16", "ours", 3, s, graphed=True))
    guarded(rows, lambda: measure("bench: twin-m eager", "vgg16", "twin", 3, s))
    guarded(rows, lambda: check_graph("vgg16", 5, True))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
