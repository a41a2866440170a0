"""find_culprits: micro-batches rebuilt from (index, seed) as training loaded them, whole and per sample."""

import itertools
import random

import numpy as np
import torch

from engine.data.loader import build_train_loader
from engine.data.samplers import TrainingSampler
from engine.events.storage import EventStorage, put_scalar
from engine.sentinel.culprits import describe, find_culprits

POISONED = 5


class NoisyValues(torch.utils.data.Dataset):
    """Sample i is i plus a random draw (an augmentation); sample POISONED is inf."""

    def __len__(self):
        return 16

    def __getitem__(self, index):
        value = float("inf") if index == POISONED else index + float(torch.rand(()))
        return {"x": torch.tensor([value])}


class Bundle:
    """The part of a model bundle the search uses: ``eval_step`` and ``last_epoch``."""

    def __init__(self):
        self.last_epoch, self.epochs = None, []

    def eval_step(self, batch):
        self.epochs.append(self.last_epoch)
        x = batch["x"]
        put_scalar("x_mean", x.mean())  # a loss term reported through the event storage
        _ = torch.rand(()), np.random.rand(), random.random()  # dropout-like draws
        return {"loss": (x * 0 + 1).mean() * x.sum(), "count": torch.tensor(float(len(x)))}


def test_culprits_are_the_samples_non_finite_alone_with_the_outputs_that_are():
    sampler = TrainingSampler(16, rank=0, world_size=1, samples_per_step=4, seed=2)
    stream = sampler.items(0, 16)
    place = next(i for i, (index, _) in enumerate(stream) if index == POISONED)
    start = place // 4 * 4
    batches = [stream[start:start + 4], stream[(start + 4) % 16:(start + 4) % 16 + 4]]
    bundle = Bundle()
    verdicts = find_culprits(bundle, NoisyValues(), batches, epoch=7)
    bad, good = verdicts
    assert sorted(bad.whole.nonfinite) == ["loss", "x_mean"] and good.whole.finite
    assert [(s.position, s.index, s.seed) for s in bad.culprits] == [(place - start, POISONED, stream[place][1])]
    assert sorted(bad.culprits[0].verdict.nonfinite) == ["loss", "x_mean"] and not good.culprits
    assert bad.culprits[0].verdict.values["count"] == 1.0 and bad.whole.values["count"] == 4.0
    assert bundle.epochs == [7] * 10 and bundle.last_epoch is None  # 2 whole + 8 alone; put back after
    assert f"dataset index {POISONED}" in describe(verdicts)[0] and describe(verdicts)[1].endswith("every output finite")


def test_a_rebuilt_micro_batch_is_the_one_the_training_loader_gave():
    sampler = TrainingSampler(16, rank=0, world_size=1, samples_per_step=4, seed=2, start=8)
    loader = build_train_loader(NoisyValues(), sampler, micro_batch=4, num_workers=0, seed=0)
    trained = next(iter(loader))["x"]
    verdict = find_culprits(Bundle(), NoisyValues(), [sampler.items(8, 4)])[0]
    assert verdict.whole.values["x_mean"] == float(trained.mean())
    assert [s.verdict.values["x_mean"] for s in verdict.samples] == [float(v) for v in trained[:, 0]]


def test_training_rng_and_the_step_storage_are_untouched():
    sampler = TrainingSampler(16, rank=0, world_size=1, samples_per_step=4, seed=2)

    def draws():
        return torch.rand(2).tolist(), np.random.rand(2).tolist(), [random.random() for _ in range(2)]

    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    expected = draws()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    with EventStorage() as storage:
        put_scalar("loss", 2.0)
        find_culprits(Bundle(), NoisyValues(), [sampler.items(0, 4), sampler.items(4, 4)])
        assert storage.pop_step() == {"loss": 2.0}
    assert draws() == expected
