"""A data set with a poisoned sample at a known index: the bad-batch records, and their replay, are tested on it.

``BadSampleDataset`` is ``ToyRegression`` (256 samples) with two switches: the target of
``bad_index`` is ``bad_value`` (inf by default, or nan), so any micro-batch holding it has a
non-finite loss; the target of ``spike_index`` is ``spike_target``, a finite loss far above
the others. Each item also carries ``draw``, one ``random.random()`` taken while it loads: the
loader seeds the RNGs with the sample's seed first, so a test can check a recorded sample seed
against what the loader really did (``random.seed(seed); random.random() == draw``).

``BadSampleModel`` (the toy regression with an ``abs_err`` term beside ``loss``) keeps the
``[index, draw]`` pairs of every training micro-batch; ``BadSampleTrainer`` writes them to
``output_dir/batches_rank<r>.json`` (besides the toy's ``record_rank<r>.json``).
"""

import json
import os
import random
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "toy"))
import toy  # noqa: E402  (ToyRegression, ToyMLP, ToyTrainer)

from engine import comm  # noqa: E402
from engine.data.build import BUILD_DATASET_REGISTRY  # noqa: E402
from engine.data.samplers import TrainingSampler  # noqa: E402
from engine.model.build import BUILD_MODEL_REGISTRY  # noqa: E402
from engine.trainer.build import BUILD_TRAINER_REGISTRY  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


@BUILD_DATASET_REGISTRY.register()
class BadSampleDataset(toy.ToyRegression):
    """``ToyRegression`` whose ``bad_index`` target is non-finite and ``spike_index`` target is ``spike_target``.

    Args:
        bad_index: the sample whose loss is non-finite (-1: none).
        bad_value: ``"inf"`` or ``"nan"``.
        spike_index: the sample whose loss spikes (-1: none).
        spike_target: its target (the others lie around 0 with spread 1).
    """

    def __init__(self, size=256, dim=8, bad_index=-1, bad_value="inf", spike_index=-1, spike_target=30.0,
                 transformer=None):
        super().__init__(size=size, dim=dim, transformer=transformer)
        if bad_index >= 0:
            self.y[bad_index] = float(bad_value)
        if spike_index >= 0:
            self.y[spike_index] = float(spike_target)

    def __getitem__(self, index):
        return dict(super().__getitem__(index), draw=random.random())


@BUILD_MODEL_REGISTRY.register()
class BadSampleModel(toy.ToyModel):
    """The toy regression, returning ``loss`` and ``abs_err``; keeps ``[index, draw]`` of every training micro-batch."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.batches = []

    def run_step(self, data, *, epoch=None, **kwargs):
        if self.g_model.training:
            self.batches.append([[int(i), float(d)] for i, d in zip(data["index"], data["draw"])])
        loss = super().run_step(data, epoch=epoch, **kwargs)
        pred = self.g_model(data["x"].to(self.device))
        return dict(loss=loss, abs_err=(pred - data["y"].to(self.device)).abs().mean().detach())


@BUILD_TRAINER_REGISTRY.register()
class BadSampleTrainer(toy.ToyTrainer):
    """``ToyTrainer`` that also writes the model's micro-batches to ``output_dir/batches_rank<r>.json``."""

    def after_loop(self):
        super().after_loop()
        with open(os.path.join(self.cfg.OUTPUT_DIR, f"batches_rank{comm.get_rank()}.json"), "w") as f:
            json.dump(self.model.batches, f)


def micro_batch_of(index, *, steps, world_size=2, train_per_batch=8, accumulation=2, seed=3, size=256):
    """Where the sampler puts ``index`` in the first ``steps`` steps: (iteration, rank, micro-batch), or None.

    Args:
        index: the dataset index looked for.
        steps: steps searched.
        world_size, train_per_batch, accumulation, seed, size: the run's settings.
    """
    micro = train_per_batch // accumulation
    for rank in range(world_size):
        sampler = TrainingSampler(size, rank=rank, world_size=world_size, samples_per_step=train_per_batch, seed=seed)
        for position, (found, _) in enumerate(sampler.items(0, steps * train_per_batch)):
            if found == index:
                return position // train_per_batch, rank, position % train_per_batch // micro
    return None


def index_at(iteration, rank, micro_batch, *, world_size=2, train_per_batch=8, accumulation=2, seed=3, size=256):
    """The first dataset index of micro-batch ``micro_batch`` of step ``iteration`` on ``rank``."""
    sampler = TrainingSampler(size, rank=rank, world_size=world_size, samples_per_step=train_per_batch, seed=seed)
    start = iteration * train_per_batch + micro_batch * (train_per_batch // accumulation)
    return sampler.items(start, 1)[0][0]


CFG = os.path.join(HERE, "bad_sample_cfg.py")
