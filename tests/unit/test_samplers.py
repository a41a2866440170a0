"""Samplers: disjoint rank shards, resumable positions, each inference sample exactly once."""

import itertools

import numpy as np
import pytest
import torch

from engine.data.loader import SeededDataset, build_train_loader
from engine.data.samplers import GroupedTrainingSampler, InferenceSampler, TrainingSampler
from engine.errors import ConfigError


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_ranks_get_disjoint_full_shards_each_epoch():
    samplers = [TrainingSampler(103, rank=r, world_size=2, samples_per_step=10, seed=5) for r in range(2)]
    assert samplers[0].samples_per_epoch == 50  # 51 per rank, truncated to whole steps
    for epoch in range(3):
        shards = [set(s.epoch_indices(epoch)) for s in samplers]
        assert len(shards[0]) == len(shards[1]) == 50 and not shards[0] & shards[1]
    assert list(samplers[0].epoch_indices(0)) != list(samplers[0].epoch_indices(1))  # reshuffled


def test_stream_resumes_exactly_from_a_position():
    straight = take(TrainingSampler(40, rank=1, world_size=2, samples_per_step=4, seed=9), 70)
    resumed = take(TrainingSampler(40, rank=1, world_size=2, samples_per_step=4, seed=9, start=33), 37)
    assert resumed == straight[33:]
    seeds = [seed for _, seed in straight]
    assert len(set(seeds)) == len(seeds)  # every draw gets its own augmentation seed


def test_too_small_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match="solver.train_per_batch"):
        TrainingSampler(10, rank=0, world_size=2, samples_per_step=8, seed=0)


@pytest.mark.parametrize("size,world", [(10, 3), (7, 2), (2, 4)])
def test_inference_sampler_visits_each_index_once(size, world):
    seen = [i for r in range(world) for i in InferenceSampler(size, rank=r, world_size=world)]
    assert sorted(seen) == list(range(size))


class NoisyDataset(torch.utils.data.Dataset):
    """Each item is a random draw, as a random augmentation would be."""

    def __len__(self):
        return 24

    def __getitem__(self, index):
        return torch.tensor([index, np.random.randint(1 << 30), torch.randint(1 << 30, ()).item()])


@pytest.mark.parametrize("workers", [0, 2])
def test_augmentation_randomness_depends_on_the_sample_not_the_worker(workers):
    def batches(start, n):
        sampler = TrainingSampler(24, rank=0, world_size=1, samples_per_step=4, seed=1, start=start)
        loader = build_train_loader(NoisyDataset(), sampler, micro_batch=4, num_workers=workers, seed=0)
        return torch.cat(list(itertools.islice(iter(loader), n)))

    straight = batches(0, 8)
    assert torch.equal(batches(12, 5), straight[12:])
    assert torch.equal(straight, batches(0, 8))
    reference = build_train_loader(NoisyDataset(), TrainingSampler(24, rank=0, world_size=1, samples_per_step=4, seed=1),
                                   micro_batch=4, num_workers=0, seed=0)
    assert torch.equal(torch.cat(list(itertools.islice(iter(reference), 8))), straight)


def test_loading_in_the_main_process_leaves_training_rng_untouched():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _ = SeededDataset(NoisyDataset())[(3, 1234)]
    assert torch.equal(torch.rand(3), expected)


def test_batches_loaded_in_the_main_process_leave_training_rng_untouched():
    sampler = TrainingSampler(24, rank=0, world_size=1, samples_per_step=4, seed=1)
    loader = build_train_loader(NoisyDataset(), sampler, micro_batch=4, num_workers=0, seed=0)
    torch.manual_seed(5)
    np.random.seed(5)
    expected = (torch.rand(3), np.random.rand(3))
    torch.manual_seed(5)
    np.random.seed(5)
    batches = list(itertools.islice(iter(loader), 3))
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
    # the batch path (__getitems__) draws exactly what per-item loading draws
    single = SeededDataset(NoisyDataset())
    first = list(itertools.islice(iter(sampler), 4))
    assert torch.equal(torch.stack([single[item] for item in first]), batches[0])


def test_seed_per_sample_off_passes_indices_through_unseeded():
    sampler = TrainingSampler(24, rank=0, world_size=1, samples_per_step=4, seed=1)
    loader = build_train_loader(NoisyDataset(), sampler, micro_batch=4, num_workers=0, seed=0, seed_per_sample=False)
    np.random.seed(3)
    first = next(iter(loader))
    np.random.seed(3)
    second = next(iter(loader))
    assert torch.equal(first[:, :2], second[:, :2])  # the numpy draw follows the process RNG
    np.random.seed(4)
    assert not torch.equal(next(iter(loader))[:, 1], first[:, 1])


def skipping_sampler(grouped, skip=(), start=0):
    if grouped:
        groups = np.random.RandomState(0).randint(0, 2, 103)
        return GroupedTrainingSampler(groups, micro_batch=4, rank=1, world_size=2, samples_per_step=8, seed=5,
                                      start=start, skip=skip)
    return TrainingSampler(103, rank=1, world_size=2, samples_per_step=8, seed=5, start=start, skip=skip)


@pytest.mark.parametrize("grouped", [False, True])
def test_a_skip_list_leaves_out_each_unit_holding_a_skipped_index_and_nothing_else(grouped):
    """dataloader.skip_samples: the stream without the units (a sample; a micro-batch when grouped) holding
    a skipped index, positions counting what is left; seeds and everything else as without the list."""
    unit, n = (4 if grouped else 1), 300  # about six epochs of 48 samples
    full = take(skipping_sampler(grouped), n)
    skip = {full[10][0], full[70][0]}
    units = [full[i:i + unit] for i in range(0, n, unit)]
    expected = [item for u in units if not any(index in skip for index, _ in u) for item in u]
    kept = take(skipping_sampler(grouped, skip), len(expected) - 8)
    assert kept == expected[:len(kept)] and not skip & {index for index, _ in kept}
    first = 10 - 10 % unit
    assert kept[:first] == full[:first]  # the same stream up to the first skipped unit
    sampler = skipping_sampler(grouped, skip)
    for start, count in [(0, 8), (37, 20), (150, 60)]:
        assert sampler.items(start, count) == kept[start:start + count]
        assert take(skipping_sampler(grouped, skip, start), count) == kept[start:start + count]  # resume


def test_a_skip_list_outside_the_data_set_or_of_all_of_it_is_a_config_error():
    with pytest.raises(ConfigError, match=r"dataloader.skip_samples: indices \[103\] are outside .* 103 samples"):
        skipping_sampler(False, skip=[3, 103])
    with pytest.raises(ConfigError, match="dataloader.skip_samples: all 103 samples"):
        skipping_sampler(False, skip=range(103))
