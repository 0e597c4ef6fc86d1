"""Data-parallel training over ``torch.distributed``, launched by PyTorch's own ``torchrun``.

Every rank holds the whole model and the whole (device-resident) dataset, draws the same global batch (the order is a
function of seed, stream and epoch) and trains on its contiguous shard of it; DDP all-reduces the gradients, so the
weights stay identical on every rank. Whatever decides the course of a search (stored masks and phases, the
Early-Time choice, an Early-Bird or round stop) is read or computed once on rank 0 and broadcast; only rank 0 writes
files and shows progress (:class:`snnlth.rundir.ranked.RankedStore`). A plain ``python -m snnlth`` is a world
of one, and every function here is then a no-op.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import signal
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn

from snnlth.errors import ConfigError, SnnlthError

TIMEOUT_SECONDS = 600  # a collective waiting longer than this for a silent rank fails (torchrun usually acts first)


class DistributedError(SnnlthError):
    """Ranks disagree, or a rank was lost."""

    exit_status = 1


@dataclass(frozen=True)
class Dist:
    """This process's place in the world: ``rank`` of ``world_size``, its ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---- agreement ------------------------------------------------------------------------------------------------
    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (anything picklable; tensors travel on the CPU)."""
        if not self.active:
            return obj
        box = [to_cpu(obj) if self.is_main else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def check_same(self, digest: str, what: str) -> None:
        """Stop with one line when ranks computed different ``what`` (their ``digest`` differs)."""
        if not self.active:
            return
        digests: list[str | None] = [None] * self.world_size
        tdist.all_gather_object(digests, digest)
        if len(set(digests)) > 1:
            odd = [r for r, d in enumerate(digests) if d != digests[0]]
            raise DistributedError(f"{what} differs between ranks (rank 0 vs rank {odd[0]}): the ranks diverged; "
                                   "rerun (it resumes), and report it if it happens again")

    def all_reduce_sum(self, *tensors: torch.Tensor) -> None:
        """Sum each tensor over the ranks, in place."""
        if self.active:
            for t in tensors:
                tdist.all_reduce(t, op=tdist.ReduceOp.SUM)

    def first_bad(self, index: torch.Tensor) -> torch.Tensor:
        """The smallest non-negative ``index`` over the ranks (-1 where none has one): the first batch whose loss
        was not finite on any rank, so that every rank stops at the same batch with the same line."""
        if not self.active:
            return index
        none = torch.iinfo(torch.long).max
        box = torch.where(index < 0, torch.full_like(index, none), index).reshape(1).to(torch.long)
        tdist.all_reduce(box, op=tdist.ReduceOp.MIN)
        return torch.where(box[0] == none, torch.full_like(box[0], -1), box[0])

    def all_true(self, flag: torch.Tensor) -> bool:
        """Whether ``flag`` holds on every rank (``--on-nan skip-batch``: every rank skips a batch alike, or DDP's
        gradient exchange would wait for the rank that skipped)."""
        if not self.active:
            return bool(flag)
        box = flag.detach().reshape(1).to(torch.long)
        tdist.all_reduce(box, op=tdist.ReduceOp.MIN)
        return bool(box[0])

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank: DDP broadcasts them before each forward,
        so after an epoch's last batch each rank holds its own; evaluation and stored states use rank 0's."""
        if self.active:
            for b in model.buffers():
                tdist.broadcast(b, src=0)

    # ---- the data of one step -------------------------------------------------------------------------------------
    def shard(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        """This rank's contiguous part of a global batch and the factor that makes the mean of the ranks' losses the
        global batch's mean loss (DDP averages gradients over ranks). None when a ragged last batch has fewer images
        than ranks (every rank skips it alike)."""
        if not self.active:
            return x, y, 1.0
        n = len(y)
        if n < self.world_size:
            return None
        xs, ys = x.tensor_split(self.world_size), y.tensor_split(self.world_size)
        mine = ys[self.rank]
        return xs[self.rank], mine, len(mine) * self.world_size / n

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` inside DistributedDataParallel (its own parameter names stay unprefixed: files and masks always
        use ``model`` itself, never the wrapper)."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index if device.index is not None else self.local_rank] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=True)

    def check_batch(self, batch_size: int) -> None:
        if self.active and batch_size % self.world_size:
            raise ConfigError(f"--batch-size {batch_size} does not divide by the world size {self.world_size} "
                              f"(processes over all nodes): the global batch is split evenly; use a multiple of "
                              f"{self.world_size}")


SINGLE = Dist()


def from_env() -> Dist:
    """The rank, world size and local rank ``torchrun`` put in the environment (a world of one without it)."""
    try:
        return Dist(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (they are set by torchrun)") from None


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group of a ``torchrun`` launch (nccl on CUDA, gloo on the CPU) and pick this rank's device:
    ``cuda:LOCAL_RANK`` on GPUs. Outside torchrun: a world of one on ``device``."""
    dist = from_env()
    if not dist.active:
        return dist, device
    if device.type == "cuda":
        if dist.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {dist.local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                              "start at most one process per GPU (--nproc-per-node)")
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                 timeout=datetime.timedelta(seconds=TIMEOUT_SECONDS))
    signal.signal(signal.SIGTERM, _lost_peer)
    return dist, device


def teardown(dist: Dist) -> None:
    """Leave the process group together at the end of a run: a barrier, then ``destroy_process_group`` on every
    rank. A rank that exits with the group still alive leaves gloo's threads to the interpreter's shutdown, which
    under load aborts it (``terminate called without an active exception``) and fails the launch."""
    if dist.active and tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()


LOST_PEER = ("rank {rank} stopped: another rank of this torchrun failed (its own message says why) or was lost; "
             "rerun the same command to resume")


def _lost_peer(signum, frame) -> None:  # noqa: ARG001 - a signal handler's signature
    """torchrun stops the other ranks (SIGTERM) when one fails: say so in one line instead of a traceback."""
    os.write(2, f"snnlth: error: {LOST_PEER.format(rank=os.environ.get('RANK', '?'))}\n".encode())
    os._exit(1)


def lost_peer(exc: BaseException, dist: Dist) -> DistributedError | None:
    """The one-line error for a collective that failed because a peer went away (gloo: connection closed or reset;
    nccl: a watchdog timeout), else None."""
    if not dist.active or not isinstance(exc, RuntimeError):
        return None
    text = str(exc).lower()
    if isinstance(exc, getattr(tdist, "DistError", ())) or any(
            k in text for k in ("connection closed", "connection reset", "broken pipe", "gloo", "nccl", "timed out")):
        return DistributedError(LOST_PEER.format(rank=dist.rank))
    return None


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor moved to the CPU (dicts, lists and tuples walked)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def to_device(obj: Any, device: torch.device | str) -> Any:
    """``obj`` with every tensor moved to ``device`` (dicts, lists and tuples walked)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors (names, shapes and values): what two ranks compare."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bool else t.numpy().tobytes())
    return h.hexdigest()
