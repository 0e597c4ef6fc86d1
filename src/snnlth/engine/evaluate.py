"""Evaluation: loss and accuracy of per-step logits."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from snnlth.data.loader import DataBundle, eval_batches


def seq_loss(logits_seq: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(1/T) Σ_t CE(logits_seq[t], y)`` for ``logits_seq: [T, B, C]`` (equal to one CE over all T·B rows)."""
    t = logits_seq.shape[0]
    return F.cross_entropy(logits_seq.flatten(0, 1).float(), y.repeat(t))


def seq_correct(logits_seq: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of right predictions, the prediction being ``argmax_c Σ_t logits_seq[t, :, c]``."""
    return (logits_seq.sum(0).argmax(-1) == y).sum()


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast when enabled, a no-op context otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.no_grad()
def evaluate(model: nn.Module, data: DataBundle, timesteps: int, batch_size: int = 256, amp: bool = False,
             split: str = "test") -> dict[str, float]:
    """Accuracy (percent) and mean loss over ``split`` in eval mode; restores the model's previous mode."""
    was_training = model.training
    model.eval()
    device = data.test_y.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for x, y in eval_batches(data, batch_size, split):
        with autocast(device, amp):
            logits_seq = model(x, timesteps)
        loss_sum += seq_loss(logits_seq, y) * len(y)
        correct += seq_correct(logits_seq, y)
        n += len(y)
    model.train(was_training)
    return {"accuracy": 100.0 * correct.item() / max(n, 1), "loss": loss_sum.item() / max(n, 1)}
