"""Aspect-ratio group sampler: homogeneous micro-batches, fixed epoch length, exact resume."""

import itertools

import numpy as np
import pytest

from engine.data.samplers import GroupedTrainingSampler, TrainingSampler, aspect_ratio_groups
from engine.errors import ConfigError


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


GROUPS = np.random.RandomState(0).randint(0, 2, 103)


@pytest.mark.parametrize("world", [1, 2])
def test_micro_batches_are_one_group_and_ranks_stay_in_step(world):
    samplers = [GroupedTrainingSampler(GROUPS, micro_batch=4, rank=r, world_size=world, samples_per_step=8, seed=3)
                for r in range(world)]
    plain = TrainingSampler(103, rank=0, world_size=world, samples_per_step=8, seed=3)
    for s in samplers:
        assert s.samples_per_epoch == plain.samples_per_epoch
        for epoch in range(3):
            indices = s.epoch_indices(epoch)
            assert len(indices) == s.samples_per_epoch
            assert all(len(set(GROUPS[b])) == 1 for b in indices.reshape(-1, 4))
            # mostly distinct: at most one top-up batch per group repeats samples
            assert len(set(indices.tolist())) >= len(indices) - 2 * 4
    if world == 2:
        assert not set(samplers[0].epoch_indices(0)) & set(samplers[1].epoch_indices(0))
    assert list(samplers[0].epoch_indices(0)) != list(samplers[0].epoch_indices(1))


def test_resume_is_exact_and_seeds_unique():
    straight = take(GroupedTrainingSampler(GROUPS, micro_batch=4, rank=1, world_size=2, samples_per_step=8, seed=9), 150)
    resumed = take(GroupedTrainingSampler(GROUPS, micro_batch=4, rank=1, world_size=2, samples_per_step=8, seed=9,
                                          start=56), 94)
    assert resumed == straight[56:]
    assert len({seed for _, seed in straight}) == len(straight)


def test_micro_batch_must_divide_the_step():
    with pytest.raises(ConfigError, match="group_sampler"):
        GroupedTrainingSampler(GROUPS, micro_batch=3, rank=0, world_size=1, samples_per_step=8, seed=0)


def test_groups_from_dataset():
    class WithRatios:
        aspect_ratios = [1.5, 0.5, 1.0]

        def __len__(self):
            return 3

    class WithShapes:
        def __len__(self):
            return 2

        def get_results(self, i):
            return {"img_shape": [(10, 20), (30, 20)][i]}

    assert aspect_ratio_groups(WithRatios()).tolist() == [0, 1, 0]
    assert aspect_ratio_groups(WithShapes()).tolist() == [0, 1]
    with pytest.raises(ConfigError, match="aspect_ratios"):
        aspect_ratio_groups([1, 2])


@pytest.mark.parametrize("grouped", [False, True])
def test_items_at_a_position_are_what_the_stream_yields_there(grouped):
    """``items(start, count)`` names the samples of any past micro-batch, across epoch ends too."""
    make = (lambda start: GroupedTrainingSampler(GROUPS, micro_batch=4, rank=1, world_size=2, samples_per_step=8,
                                                 seed=5, start=start)) if grouped else \
        (lambda start: TrainingSampler(103, rank=1, world_size=2, samples_per_step=8, seed=5, start=start))
    stream = list(itertools.islice(iter(make(0)), 200))
    sampler = make(0)
    for start, count in [(0, 8), (13, 20), (sampler.samples_per_epoch - 3, 11), (150, 50)]:
        assert sampler.items(start, count) == stream[start:start + count]
