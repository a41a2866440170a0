"""Samplers whose position is a number, so a resumed run continues the data stream exactly."""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Sampler

from engine.errors import ConfigError, EngineError

#: where a skip list comes from, named in its errors
SKIP_KEY = "dataloader.skip_samples"
#: epochs in a row without a kept sample before a skip list is called unworkable (else: an endless walk)
_MAX_EMPTY_EPOCHS = 16


class TrainingSampler(Sampler):
    """An endless, epoch-structured stream of ``(index, sample_seed)`` for one rank.

    Epoch ``e`` is a permutation of the dataset drawn from ``(seed, e)``; rank ``r`` takes
    every ``world_size``-th index of it, truncated to ``samples_per_epoch`` so that every
    optimizer step is full and epochs end on a step boundary. ``start`` (samples already
    consumed by this rank) fixes where the stream begins, which is all a resume needs.

    ``sample_seed`` is derived from (seed, epoch, rank, position): the dataset wrapper seeds
    the augmentation RNGs with it, so the same sample is augmented the same way whether it
    is loaded by worker 0, worker 3, or the main process after a resume.

    ``skip`` (``dataloader.skip_samples``, grown by ``solver.nan_policy = 'rollback'``) names
    dataset indices left out: the stream is the one above with every *unit* holding a skipped
    index removed (a unit is one sample here, one micro-batch in the grouped sampler), and
    positions (``start``, ``items``) count what is left. Epochs keep their permutations,
    their sample seeds and their length in steps; the stream only runs ahead into the next
    permutation by the samples it left out. So with a skip list a run sees at each step what
    a run configured with that list from its start sees there, and both equal the run
    without it up to the first skipped sample.
    """

    unit = 1  # samples left out together with a skipped index

    def __init__(self, size: int, *, rank: int, world_size: int, samples_per_step: int,
                 seed: int, shuffle: bool = True, start: int = 0, skip: Iterable[int] = ()) -> None:
        per_rank = size // world_size
        self.samples_per_epoch = per_rank // samples_per_step * samples_per_step
        if self.samples_per_epoch == 0:
            raise ConfigError(
                f"solver.train_per_batch: the training set has {size} samples, {per_rank} per rank over "
                f"{world_size} ranks, fewer than one optimizer step of {samples_per_step}; lower the batch size"
            )
        self.size, self.rank, self.world_size = size, rank, world_size
        self.seed, self.shuffle, self.start = seed, shuffle, start
        self.set_skip(skip)

    def set_skip(self, indices: Iterable[int]) -> None:
        """Leave the dataset ``indices`` out of the stream from now on (positions then count the rest).

        Args:
            indices: dataset indices, each in ``[0, size)``.

        Raises:
            ConfigError: an index outside the dataset, or a list that leaves nothing to train on.
        """
        wanted = sorted({int(i) for i in indices})
        outside = [i for i in wanted if not 0 <= i < self.size]
        if outside:
            raise ConfigError(f"{SKIP_KEY}: indices {outside[:10]} are outside the training set of {self.size} samples "
                              f"(valid: 0..{self.size - 1})")
        if len(wanted) >= self.size:
            raise ConfigError(f"{SKIP_KEY}: all {self.size} samples of the training set are skipped")
        self.skip: Tuple[int, ...] = tuple(wanted)
        self._skip_array = np.asarray(wanted, dtype=np.int64)
        self._kept_counts: Dict[int, int] = {}  # epoch -> samples it keeps (cached: positions walk epochs)

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

    def kept_offsets(self, epoch: int, indices: np.ndarray) -> Union[range, np.ndarray]:
        """Offsets into ``indices`` (= ``epoch_indices(epoch)``) that the skip list leaves in the stream."""
        if not self.skip:
            return range(len(indices))
        units = np.isin(indices, self._skip_array).reshape(-1, self.unit).any(axis=1)
        return np.flatnonzero(~np.repeat(units, self.unit))

    def _kept_count(self, epoch: int) -> int:
        if epoch not in self._kept_counts:
            self._kept_counts[epoch] = len(self.kept_offsets(epoch, self.epoch_indices(epoch)))
        return self._kept_counts[epoch]

    def locate(self, position: int) -> Tuple[int, int]:
        """(epoch, k): stream position ``position`` is the ``k``-th kept sample of that epoch.

        Without a skip list it is a division; with one, epochs are walked from the first (each
        permutation drawn once per sampler; about 10 ms per epoch of a million samples).
        """
        if not self.skip:
            return divmod(position, self.samples_per_epoch)
        epoch = empty = 0
        while position >= self._kept_count(epoch):
            empty = self._count_empty(empty, self._kept_count(epoch))
            position -= self._kept_count(epoch)
            epoch += 1
        return epoch, position

    def _count_empty(self, empty: int, kept: int) -> int:
        """Epochs in a row that kept no sample, ``kept`` being this one's; too many is an error, not an endless walk."""
        empty = empty + 1 if kept == 0 else 0
        if empty > _MAX_EMPTY_EPOCHS:
            raise EngineError(f"{SKIP_KEY}: rank {self.rank} kept no sample in {empty} epochs in a row: every "
                              "micro-batch holds a skipped index; skip fewer samples")
        return empty

    def _stream(self, position: int) -> Iterator[Tuple[int, int]]:
        """``(index, sample_seed)`` from stream position ``position`` on, endlessly."""
        epoch, k = self.locate(position)
        empty = 0
        while True:
            indices = self.epoch_indices(epoch)
            kept = self.kept_offsets(epoch, indices)
            empty = self._count_empty(empty, len(kept))
            for i in kept[k:]:
                yield int(indices[i]), sample_seed(self.seed, epoch, self.rank, int(i))
            epoch, k = epoch + 1, 0

    def items(self, start: int, count: int) -> List[Tuple[int, int]]:
        """The ``(index, sample_seed)`` pairs at stream positions ``start .. start + count - 1``.

        What ``__iter__`` yields there, computed without iterating from the start: enough to
        name, and to rebuild exactly, the samples of any past micro-batch (position = samples
        this rank consumed before it).
        """
        stream = self._stream(start)
        return [next(stream) for _ in range(count)]

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        return self._stream(self.start)


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
    A skipped index leaves out its whole micro-batch (micro-batches stay one group each, and
    the epoch's batches stay those of the run without a skip list).

    Args:
        group_ids: one group number per dataset index (``aspect_ratio_groups``).
        micro_batch: the loader's batch size; ``samples_per_step`` must be a multiple of it.
    """

    def __init__(self, group_ids, *, micro_batch: int, rank: int, world_size: int, samples_per_step: int,
                 seed: int, shuffle: bool = True, start: int = 0, skip: Iterable[int] = ()) -> None:
        if micro_batch < 1 or samples_per_step % micro_batch:
            raise ConfigError(f"dataloader.group_sampler: micro-batch {micro_batch} must divide the "
                              f"{samples_per_step} samples of one step")
        self.group_ids = np.asarray(group_ids, dtype=np.int64)
        self.micro_batch = self.unit = micro_batch  # a skipped index takes its micro-batch with it (one group each)
        super().__init__(len(group_ids), rank=rank, world_size=world_size, samples_per_step=samples_per_step,
                         seed=seed, shuffle=shuffle, start=start, skip=skip)

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
