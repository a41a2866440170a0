"""engine.data.rng: the main-process snapshot of the global RNGs puts back every bit of state (and a worker skips it)."""

import random

import numpy as np
import pytest
import torch

from engine.data import rng
from engine.data.loader import SeededDataset


def _legacy_state():
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return name, key.copy(), pos, has_gauss, gauss


def _assert_same_legacy_state(got, expected):
    assert got[0] == expected[0] and got[2:] == expected[2:]
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("cached_gaussian", [False, True], ids=["no-cached-gaussian", "cached-gaussian"])
def test_capture_restore_is_exact_after_seeded_samples(cached_gaussian):
    np.random.seed(11)
    random.seed(12)
    torch.manual_seed(13)
    np.random.rand(700)  # past one MT refill, so the position is not a fresh seed's
    if cached_gaussian:
        np.random.standard_normal()  # an odd number of legacy normals leaves one cached
    expected = _legacy_state(), random.getstate(), torch.get_rng_state()
    assert expected[0][3] == int(cached_gaussian)

    saved = rng.capture()
    for seed in (5, 6, 7):  # samples that draw from all three, leaving a Gaussian cached each time
        rng.seed_all(seed)
        np.random.standard_normal(1 + seed % 2)
        np.random.rand(900)
        random.random()
        torch.rand(2)
    rng.restore(saved)

    _assert_same_legacy_state(_legacy_state(), expected[0])
    assert random.getstate() == expected[1]
    assert torch.equal(torch.get_rng_state(), expected[2])
    later = np.random.standard_normal(3)  # the next draws, the cached Gaussian first, are the same
    np.random.set_state(expected[0])
    np.testing.assert_array_equal(later, np.random.standard_normal(3))


def test_restore_undoes_a_bit_generator_swapped_in_by_a_sample():
    np.random.seed(3)
    expected = _legacy_state()
    saved = rng.capture()
    np.random.set_bit_generator(np.random.PCG64(0))
    rng.restore(saved)
    assert isinstance(np.random.get_bit_generator(), np.random.MT19937)
    _assert_same_legacy_state(_legacy_state(), expected)


def test_seeded_draws_match_plain_reseeding():
    """seed_all gives each library exactly the state its own seed function gives (the stream of existing runs)."""
    rng.seed_all(4242)
    ours = random.random(), np.random.standard_normal(3), torch.rand(2)
    random.seed(4242)
    np.random.seed(4242)
    torch.manual_seed(4242)
    assert ours[0] == random.random()
    np.testing.assert_array_equal(ours[1], np.random.standard_normal(3))
    assert torch.equal(ours[2], torch.rand(2))


class _DrawsFromEveryRng:
    def __getitem__(self, index):
        return index, random.random(), float(np.random.random()), float(torch.rand(()))


def test_seeded_samples_is_the_batch_without_the_snapshot():
    """A worker's fetch: the same samples as ``__getitems__``, the RNGs left where the last sample left them."""
    dataset, items = SeededDataset(_DrawsFromEveryRng()), [(0, 7), (1, 8)]
    np.random.seed(1)
    training = np.random.random()
    np.random.seed(1)
    batch = dataset.__getitems__(items)
    assert np.random.random() == training  # the main process's fetch puts the training RNG back
    assert dataset.seeded_samples(items) == batch
    rng.seed_all(8)
    _DrawsFromEveryRng()[1]
    after_last = random.random(), np.random.random(), torch.rand(())
    dataset.seeded_samples(items)
    assert (random.random(), np.random.random(), torch.rand(())) == after_last
