"""Samplers whose position is a number, so a resumed run continues the data stream exactly."""

from __future__ import annotations

from typing import Iterator, Tuple

import numpy as np
import torch
from torch.utils.data import Sampler

from engine.errors import ConfigError


class TrainingSampler(Sampler):
    """An endless, epoch-structured stream of ``(index, sample_seed)`` for one rank.

    Epoch ``e`` is a permutation of the dataset drawn from ``(seed, e)``; rank ``r`` takes
    every ``world_size``-th index of it, truncated to ``samples_per_epoch`` so that every
    optimizer step is full and epochs end on a step boundary. ``start`` (samples already
    consumed by this rank) fixes where the stream begins, which is all a resume needs.

    ``sample_seed`` is derived from (seed, epoch, rank, position): the dataset wrapper seeds
    the augmentation RNGs with it, so the same sample is augmented the same way whether it
    is loaded by worker 0, worker 3, or the main process after a resume.
    """

    def __init__(self, size: int, *, rank: int, world_size: int, samples_per_step: int,
                 seed: int, shuffle: bool = True, start: int = 0) -> None:
        per_rank = size // world_size
        self.samples_per_epoch = per_rank // samples_per_step * samples_per_step
        if self.samples_per_epoch == 0:
            raise ConfigError(
                f"solver.train_per_batch: the training set has {size} samples, {per_rank} per rank over "
                f"{world_size} ranks, fewer than one optimizer step of {samples_per_step}; lower the batch size"
            )
        self.size, self.rank, self.world_size = size, rank, world_size
        self.seed, self.shuffle, self.start = seed, shuffle, start

    def epoch_indices(self, epoch: int) -> np.ndarray:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.size, generator=generator).numpy()
        else:
            order = np.arange(self.size)
        return order[self.rank::self.world_size][: self.samples_per_epoch]

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        position = self.start
        while True:
            epoch, offset = divmod(position, self.samples_per_epoch)
            indices = self.epoch_indices(epoch)
            for i in range(offset, self.samples_per_epoch):
                yield int(indices[i]), sample_seed(self.seed, epoch, self.rank, i)
            position = (epoch + 1) * self.samples_per_epoch


def sample_seed(seed: int, epoch: int, rank: int, position: int) -> int:
    """A 32-bit seed unique to one draw of one sample."""
    return int(np.random.SeedSequence([seed, epoch, rank, position]).generate_state(1)[0])


class InferenceSampler(Sampler):
    """Each index exactly once across ranks: rank ``r`` gets one contiguous slice, in order."""

    def __init__(self, size: int, *, rank: int, world_size: int) -> None:
        begin = size * rank // world_size
        end = size * (rank + 1) // world_size
        self.indices = range(begin, end)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
