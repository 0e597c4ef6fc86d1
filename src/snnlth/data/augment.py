"""Batched, on-device augmentation: random crop with zero padding, horizontal flip, Cutout, normalisation.

The random numbers of a whole epoch (a few per image) are drawn at once from a CPU ``torch.Generator``
(:func:`draw_epoch`) and reach the device in one copy together with the epoch's order, so training waits on no
host-to-device copy per batch, a given seed gives the same images on CPU and CUDA, and a resumed run sees exactly
the batches it would have seen. Each transform takes its slice of the draws.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# columns of the per-image draws: crop row and column offsets, flip (0/1), Cutout centre row and column
DRAW_COLUMNS = 5


def draw_epoch(n: int, height: int, width: int, padding: int, gen: torch.Generator) -> torch.Tensor:
    """``[n, 5]`` int64 random numbers for ``n`` images (see ``DRAW_COLUMNS``), on the CPU, from ``gen``."""
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=gen)
    flips = (torch.rand(n, generator=gen) < 0.5).long().unsqueeze(1)
    centres = torch.cat([torch.randint(0, height, (n, 1), generator=gen),
                         torch.randint(0, width, (n, 1), generator=gen)], 1)
    return torch.cat([offsets, flips, centres], 1)


def normalize(x_u8: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ``[B, C, H, W]`` -> float ``(x/255 - mean) / std``."""
    m = torch.tensor(mean, device=x_u8.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x_u8.device).view(1, -1, 1, 1)
    return (x_u8.float() / 255 - m) / s


def random_crop(x: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Zero-pad ``x: [B, C, H, W]`` by ``padding`` and cut one H×W window per image, at ``offsets: [B, 2]``
    (row, column) in ``0..2·padding``."""
    if padding <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # [B, H]
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    # indexed straight into [B, C, H, W] order: plain contiguous strides. (A permuted [B, H, W, C] result reads as
    # channels-last to the convolution, which then keeps the whole network in that layout: BatchNorm's backward is
    # ~10x slower in it on CPU.)
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


def random_hflip(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Mirror the images of ``x: [B, C, H, W]`` whose ``flips: [B]`` is 1."""
    return torch.where(flips.bool().view(-1, 1, 1, 1), x.flip(-1), x)


def cutout(x: torch.Tensor, size: int, centres: torch.Tensor) -> torch.Tensor:
    """Zero one ``size``×``size`` square per image, centred at ``centres: [B, 2]`` (row, column; clipped at the
    border), as DeVries & Taylor. Applied to raw pixels, before normalisation, so the hole is black (as in the
    official code's transform)."""
    if size <= 0:
        return x
    _, _, h, w = x.shape
    cy, cx = centres[:, 0].view(-1, 1, 1), centres[:, 1].view(-1, 1, 1)
    ys = torch.arange(h, device=x.device).view(1, -1, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, -1)
    hole = (ys >= cy - size // 2) & (ys < cy + size - size // 2) & (xs >= cx - size // 2) & (xs < cx + size - size // 2)
    return x * (~hole).unsqueeze(1).to(x.dtype)


def augment(x_u8: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], padding: int, hflip: bool,
            cutout_size: int, draws: torch.Tensor) -> torch.Tensor:
    """The training transform of the paper's code, batched: crop(pad) -> flip -> Cutout (black hole) -> normalise;
    ``draws: [B, 5]`` from :func:`draw_epoch`, on ``x_u8``'s device."""
    x = random_crop(x_u8, padding, draws[:, 0:2])
    if hflip:
        x = random_hflip(x, draws[:, 2])
    return normalize(cutout(x, cutout_size, draws[:, 3:5]), mean, std)
