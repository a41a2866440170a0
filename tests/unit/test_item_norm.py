"""ItemWeights: each micro-batch's loss weight is its share of the step's items; the loop hands bundles the window first."""

import pytest
import torch

from engine.events.step import StepResult
from engine.model.item_norm import ItemWeights, WeightedLoss
from engine.trainer.loop import TrainLoop


def test_weights_make_the_accumulated_step_the_per_item_mean():
    weights = ItemWeights(accumulation=4, dp_size=1, group=None, device=torch.device("cpu"))
    counts = [3, torch.tensor(5), 0, 8]
    weights.plan(counts)
    assert weights.step_items.item() == 16
    losses = torch.tensor([1.0, 2.0, 7.0, 4.0])  # each a mean over its own items
    backward, logged = zip(*(weights.next() for _ in counts))
    assert not weights.pending
    # DeepSpeed divides each backward by the accumulation: what remains is sum(n_i * loss_i) / N
    step_loss = sum(w * l for w, l in zip(backward, losses)) / 4
    assert step_loss.item() == pytest.approx((3 * 1 + 5 * 2 + 0 + 8 * 4) / 16)
    assert (sum(w * l for w, l in zip(logged, losses)) / 4).item() == pytest.approx(step_loss.item())


def test_a_step_without_items_gets_zero_weights_not_nan():
    weights = ItemWeights(accumulation=2, dp_size=1, group=None, device=torch.device("cpu"))
    weights.plan([0, 0])
    assert [w.item() for pair in (weights.next(), weights.next()) for w in pair] == [0.0] * 4


def test_the_count_of_counts_must_match_the_accumulation():
    weights = ItemWeights(accumulation=2, dp_size=1, group=None, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="3 item counts for 2 micro-batches"):
        weights.plan([1, 2, 3])


def test_pipeline_loss_is_weighed_in_order_and_evaluation_passes_through():
    weights = ItemWeights(accumulation=2, dp_size=1, group=None, device=torch.device("cpu"))
    loss_fn = WeightedLoss(lambda outputs, labels: (outputs - labels).abs().mean())
    loss_fn.weights = weights
    weights.plan([1, 3])
    one = torch.ones(2)
    assert [loss_fn(one * 2, one).item() for _ in range(2)] == [0.5, 1.5]
    assert loss_fn(one * 2, one).item() == 1.0  # nothing pending: an evaluation call


class CountingBundle:
    """Records what the loop hands over: the window of micro-batches, then each micro-batch."""

    counts_items = True

    def __init__(self):
        self.windows, self.micro = [], []

    def begin_accumulation(self, batches):
        self.windows.append(list(batches))

    def train_micro_step(self, data, *, epoch=None):
        self.micro.append(data)
        return StepResult({"loss": torch.tensor(float(data))}, skipped=False, boundary=len(self.micro) % 3 == 0)


def test_the_loop_hands_a_counting_bundle_each_steps_micro_batches_before_the_first_runs():
    bundle = CountingBundle()
    loop = TrainLoop(bundle, range(9), [], max_iter=3, accumulation=3)
    loop.train()
    assert bundle.windows == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert bundle.micro == list(range(9))  # the same batches, in the same order
