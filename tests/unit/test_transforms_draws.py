"""The transforms' fast draws are numpy's own, value for value and word for word.

Augmented streams of existing runs (and exact resume) depend on every transform drawing
the same numbers in the same order; these helpers replace numpy calls only to skip their
argument handling, so each is checked against the call it replaces, followed by one more
draw that shows both consumed the same part of the stream.
"""

import numpy as np
import pytest

import engine.transforms as T
from engine.transforms.base import randbelow, shuffled, uniform

SEEDS = range(200)


def _same_draws(ours, numpy_call, seed):
    np.random.seed(seed)
    got, after = ours(), np.random.random()
    np.random.seed(seed)
    expected, expected_after = numpy_call(), np.random.random()
    return got == expected and after == expected_after


@pytest.mark.parametrize("rng", [(0.6, 1.4), (-0.1, 0.1), (0.3, 3.0), (1e-6, 7.5), (-1e3, 1e-3)])
def test_uniform_is_numpys_uniform(rng):
    assert all(_same_draws(lambda: uniform(rng), lambda: float(np.random.uniform(*rng)), s) for s in SEEDS)
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    assert uniform((2.0, 2.0)) == 2.0
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # a fixed value draws nothing


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 100, 255, 256, 257, 2**31 + 5])
def test_randbelow_is_numpys_randint(n):
    assert all(_same_draws(lambda: randbelow(n), lambda: int(np.random.randint(n)), s) for s in SEEDS)


def test_randbelow_on_another_bit_generator_goes_through_numpy():
    saved = np.random.get_bit_generator()
    try:
        np.random.set_bit_generator(np.random.PCG64(1))
        ours = [randbelow(6) for _ in range(50)]
        np.random.set_bit_generator(np.random.PCG64(1))
        assert ours == [int(np.random.randint(6)) for _ in range(50)]
    finally:
        np.random.set_bit_generator(saved)


@pytest.mark.parametrize("n", [1, 2, 7])
def test_shuffled_is_numpys_permutation(n):
    assert all(_same_draws(lambda: shuffled(n), lambda: np.random.permutation(n).tolist(), s) for s in SEEDS)


@pytest.mark.parametrize("scale", [0.05, 0.1, 0.6])
def test_tone_curve_draws_numpys_normal(scale):
    def numpy_call():
        low, high = np.random.normal(loc=(0.25, 0.75), scale=scale)
        return {"low_y": float(np.clip(low, 0, 1)), "high_y": float(np.clip(high, 0, 1))}
    curve = T.RandomToneCurve(scale=scale)
    assert all(_same_draws(lambda: curve.get_params({}), numpy_call, s) for s in SEEDS)
