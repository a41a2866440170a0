"""Samplers whose position is a number, so a resumed run continues the data stream exactly."""

from __future__ import annotations

from typing import Iterator, List, Tuple

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

    def rank_shard(self, epoch: int) -> np.ndarray:
        """This rank's share of epoch ``epoch``'s permutation (every ``world_size``-th index)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.size, generator=generator).numpy()
        else:
            order = np.arange(self.size)
        return order[self.rank::self.world_size][: self.size // self.world_size]

    def epoch_indices(self, epoch: int) -> np.ndarray:
        return self.rank_shard(epoch)[: self.samples_per_epoch]

    def items(self, start: int, count: int) -> List[Tuple[int, int]]:
        """The ``(index, sample_seed)`` pairs at stream positions ``start .. start + count - 1``.

        What ``__iter__`` yields there, computed without iterating: enough to name, and to
        rebuild exactly, the samples of any past micro-batch (position = samples this rank
        consumed before it).
        """
        picked: List[Tuple[int, int]] = []
        position = start
        while len(picked) < count:
            epoch, offset = divmod(position, self.samples_per_epoch)
            indices = self.epoch_indices(epoch)
            stop = min(self.samples_per_epoch, offset + count - len(picked))
            picked.extend((int(indices[i]), sample_seed(self.seed, epoch, self.rank, i)) for i in range(offset, stop))
            position = epoch * self.samples_per_epoch + stop
        return picked

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        position = self.start
        while True:
            epoch, offset = divmod(position, self.samples_per_epoch)
            indices = self.epoch_indices(epoch)
            for i in range(offset, self.samples_per_epoch):
                yield int(indices[i]), sample_seed(self.seed, epoch, self.rank, i)
            position = (epoch + 1) * self.samples_per_epoch


_MASK64 = (1 << 64) - 1


def sample_seed(seed: int, epoch: int, rank: int, position: int) -> int:
    """A 32-bit seed for one draw of one sample: a splitmix64 hash of the four numbers.

    Called once per sample on the data path, so it is plain integer arithmetic (about 1 µs)
    rather than numpy's SeedSequence (about 18 µs); distinct inputs give well-spread seeds.
    """
    state = 0
    for value in (seed, epoch, rank, position):
        state = (state ^ (value & _MASK64)) * 0x9E3779B97F4A7C15 & _MASK64
        state ^= state >> 30
        state = state * 0xBF58476D1CE4E5B9 & _MASK64
        state ^= state >> 27
        state = state * 0x94D049BB133111EB & _MASK64
        state ^= state >> 31
    return state >> 32


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


class GroupedTrainingSampler(TrainingSampler):
    """``TrainingSampler`` whose micro-batches each hold one aspect-ratio group (seed: ``GROUP_SAMPLER``).

    Per epoch and rank: the rank's shard of the epoch permutation (as in ``TrainingSampler``)
    is split by group, order kept; each group is cut into micro-batches of ``micro_batch``,
    a group's last partial batch topped up with that group's first samples of the epoch; the
    batches are shuffled from ``(seed, epoch, rank)`` and the first ``samples_per_epoch /
    micro_batch`` are kept. So every rank still yields exactly ``samples_per_epoch``
    samples per epoch (ranks stay in step), a resume from ``start`` is still exact, and the
    price is that up to ``groups * micro_batch`` samples per epoch are dropped or repeated.

    Args:
        group_ids: one group number per dataset index (``aspect_ratio_groups``).
        micro_batch: the loader's batch size; ``samples_per_step`` must be a multiple of it.
    """

    def __init__(self, group_ids, *, micro_batch: int, rank: int, world_size: int, samples_per_step: int,
                 seed: int, shuffle: bool = True, start: int = 0) -> None:
        super().__init__(len(group_ids), rank=rank, world_size=world_size, samples_per_step=samples_per_step,
                         seed=seed, shuffle=shuffle, start=start)
        if micro_batch < 1 or samples_per_step % micro_batch:
            raise ConfigError(f"dataloader.group_sampler: micro-batch {micro_batch} must divide the "
                              f"{samples_per_step} samples of one step")
        self.group_ids = np.asarray(group_ids, dtype=np.int64)
        self.micro_batch = micro_batch

    def epoch_indices(self, epoch: int) -> np.ndarray:
        shard = self.rank_shard(epoch)
        batch = self.micro_batch
        batches = []
        for group in np.unique(self.group_ids[shard]):
            members = shard[self.group_ids[shard] == group]
            short = -len(members) % batch
            members = np.concatenate([members, np.resize(members, short)]) if short else members
            batches.extend(members.reshape(-1, batch))
        if self.shuffle:
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 257 + self.rank + 1)
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return np.concatenate(batches[: self.samples_per_epoch // batch])


def aspect_ratio_groups(dataset) -> np.ndarray:
    """Group 0 for landscape (w >= h), 1 for portrait, per dataset index.

    Read from ``dataset.aspect_ratios`` (w / h per index) if present, else
    ``dataset.get_aspect_ratio(i)``, else the ``img_shape`` of ``dataset.get_results(i)``
    (loads every image once: give the dataset ``aspect_ratios`` for large sets).
    """
    ratios = getattr(dataset, "aspect_ratios", None)
    if ratios is None and hasattr(dataset, "get_aspect_ratio"):
        ratios = [dataset.get_aspect_ratio(i) for i in range(len(dataset))]
    if ratios is None:
        try:
            shapes = [dataset.get_results(i)["img_shape"] for i in range(len(dataset))]
        except (AttributeError, NotImplementedError, KeyError) as error:
            raise ConfigError(
                f"dataloader.group_sampler: {type(dataset).__name__} gives no aspect ratios; add an "
                "`aspect_ratios` attribute (w / h per index) or get_aspect_ratio(index)"
            ) from error
        ratios = [shape[1] / shape[0] for shape in shapes]
    return (np.asarray(ratios, dtype=np.float64) < 1).astype(np.int64)
