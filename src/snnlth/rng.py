"""Every random stream of a run, named in one place.

Results are a pure function of the seed through these numbers: data order and augmentation of epoch e of a phase
on stream s come from ``epoch_generator(seed, e, s)``; each training phase of a search has its own stream. Changing
any number here changes every run's results.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

SEED_STRIDE = 1_000_003  # epoch generator seed = seed * SEED_STRIDE + stream * STREAM_STRIDE + epoch
STREAM_STRIDE = 10_007

REINIT_SEED_OFFSET = 1_000_003  # reinit: a fresh init, different from the source's even with the same seed
RANDOM_PRUNE_STRIDE = 7_919  # random pruning of round k draws from seed * RANDOM_PRUNE_STRIDE + k
ET_BATCH_OFFSET = 7_919  # Early-Time: the fixed KL batch is drawn from seed + ET_BATCH_OFFSET


class STREAM:
    """Data-order streams of the training phases of a search (train runs use stream 0)."""

    ROUND = 0  # round k of IMP / random pruning: stream k; the Early-Bird dense run: stream 0
    RETRAIN = 100  # full-T retraining of round k: 100 + k
    EB_RETRAIN = 200  # retraining of Early-Bird ticket i: 200 + i
    REINIT = 300  # reinit of level j: 300 + j
    ONE_SHOT = 400  # one-shot methods (snip, oneshot): the dense/score phase 400, ticket k: 400 + k

    @staticmethod
    def round(k: int) -> int:
        return STREAM.ROUND + k

    @staticmethod
    def retrain(k: int) -> int:
        return STREAM.RETRAIN + k

    @staticmethod
    def eb_retrain(i: int) -> int:
        return STREAM.EB_RETRAIN + i

    @staticmethod
    def reinit(j: int) -> int:
        return STREAM.REINIT + j

    @staticmethod
    def one_shot(k: int) -> int:
        return STREAM.ONE_SHOT + k


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """CPU generator for one epoch's order and augmentation: a pure function of (seed, stream, epoch)."""
    return torch.Generator().manual_seed(seed * SEED_STRIDE + stream * STREAM_STRIDE + epoch)


@contextlib.contextmanager
def global_rng_kept() -> Iterator[None]:
    """Run a block without moving the global random streams a run draws from (torch's CPU generator, Python's
    ``random``, numpy's): a side computation (a probe forward, a user dataset's random transform) then leaves the
    run's results as they would be without it."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
