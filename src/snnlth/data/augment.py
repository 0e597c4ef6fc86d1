"""Batched, on-device augmentation: random crop with zero padding, horizontal flip, Cutout, normalisation.

Random draws come from a CPU ``torch.Generator`` (a few numbers per image), so a given seed gives the same images on
CPU and CUDA, and a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalize(x_u8: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ``[B, C, H, W]`` -> float ``(x/255 - mean) / std``."""
    m = torch.tensor(mean, device=x_u8.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x_u8.device).view(1, -1, 1, 1)
    return (x_u8.float() / 255 - m) / s


def random_crop(x: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad ``x: [B, C, H, W]`` by ``padding`` and cut one random H×W window per image."""
    if padding <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    offs = torch.randint(0, 2 * padding + 1, (b, 2), generator=gen).to(x.device)
    rows = offs[:, :1] + torch.arange(h, device=x.device)  # [B, H]
    cols = offs[:, 1:] + torch.arange(w, device=x.device)  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # [B,H,W,C] -> [B,C,H,W]


def random_hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image of ``x: [B, C, H, W]`` with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


def cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Zero one ``size``×``size`` square per image, centred anywhere (clipped at the border), as DeVries & Taylor.
    Applied to raw pixels, before normalisation, so the hole is black (as in the official code's transform)."""
    if size <= 0:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b, 1, 1), generator=gen).to(x.device)
    cx = torch.randint(0, w, (b, 1, 1), generator=gen).to(x.device)
    ys = torch.arange(h, device=x.device).view(1, -1, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, -1)
    hole = (ys >= cy - size // 2) & (ys < cy + size - size // 2) & (xs >= cx - size // 2) & (xs < cx + size - size // 2)
    return x * (~hole).unsqueeze(1).to(x.dtype)


def augment(x_u8: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], padding: int, hflip: bool,
            cutout_size: int, gen: torch.Generator) -> torch.Tensor:
    """The training transform of the paper's code, batched: crop(pad) -> flip -> Cutout (black hole) -> normalise."""
    x = random_crop(x_u8, padding, gen)
    if hflip:
        x = random_hflip(x, gen)
    return normalize(cutout(x, cutout_size, gen), mean, std)
