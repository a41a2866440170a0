"""TrainLoop in-process on a toy bundle: no config, no process group, no DeepSpeed."""

import csv
import json

import pytest
import torch

from engine.events.hooks import HookBase
from engine.events.step import Rewind, StepResult
from engine.events.storage import put_scalar
from engine.log.trackers_hook import TrackersHook
from engine.trackers import RunInfo, TrackerGroup
from engine.trainer.hooks import register_hooks
from engine.trainer.loop import TrainLoop


def batches(count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, generator=generator), torch.randn(4, 1, generator=generator)) for _ in range(count)]


def toy_network():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1)


class ToyBundle:
    """``nn.Linear`` + SGD with gradient accumulation: the whole bundle protocol the loop needs."""

    def __init__(self, accumulation, skip_at=()):
        self.net = toy_network()
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.1)
        self.accumulation, self.skip_at = accumulation, set(skip_at)
        self.micro, self.epochs = 0, []

    def train_micro_step(self, data, *, epoch=None):
        self.epochs.append(epoch)
        inputs, target = data
        loss = torch.nn.functional.mse_loss(self.net(inputs), target)
        (loss / self.accumulation).backward()
        self.micro += 1
        boundary = self.micro % self.accumulation == 0
        skipped = boundary and self.micro // self.accumulation in self.skip_at
        if boundary:
            if not skipped:
                self.optimizer.step()
            self.optimizer.zero_grad()
        put_scalar("extra", torch.tensor(1.0))  # library code reports through the loop's storage
        return StepResult({"loss": loss.detach()}, skipped=skipped, boundary=boundary)


class Recorder(HookBase):
    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def before_train(self):
        self.calls.append((self.name, "before_train", self.trainer.iter))

    def before_step(self):
        self.calls.append((self.name, "before_step", self.trainer.iter))

    def after_step(self):
        self.calls.append((self.name, "after_step", self.trainer.iter))

    def after_train(self):
        self.calls.append((self.name, "after_train", self.trainer.iter))

    def after_failure(self):
        self.calls.append((self.name, "after_failure", self.trainer.iter))


class NonfiniteLoop(TrainLoop):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nonfinite_at = []

    def _on_nonfinite_step(self):
        self.nonfinite_at.append(self.iter + 1)


def run(bundle, steps, accumulation, hooks=(), start=0, loop_class=TrainLoop):
    loop = loop_class(bundle, batches(steps * accumulation), [], start_iter=start, max_iter=steps,
                      accumulation=accumulation, samples_per_step=4 * accumulation)
    loop.hooks = register_hooks(loop, list(hooks))
    loop.train()
    return loop


def test_hooks_run_in_order_around_each_step_and_steps_count_optimizer_steps():
    calls = []
    bundle = ToyBundle(accumulation=2)
    loop = run(bundle, steps=3, accumulation=2, hooks=[Recorder("a", calls), Recorder("b", calls)])
    expected = [("a", "before_train", 0), ("b", "before_train", 0)]
    for step in range(3):
        expected += [("a", "before_step", step), ("b", "before_step", step),
                     ("a", "after_step", step), ("b", "after_step", step)]
    expected += [("a", "after_train", 2), ("b", "after_train", 2)]
    assert calls == expected
    assert bundle.micro == 6 and bundle.epochs == [0, 0, 1, 1, 2, 2]  # two micro-batches per step
    assert set(loop.step_outputs) == {"loss", "extra"} and len(loop.metrics.window) == 3


def test_weights_equal_a_hand_written_loop_bit_for_bit():
    bundle = ToyBundle(accumulation=2)
    run(bundle, steps=4, accumulation=2)
    net = toy_network()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    data = batches(8)
    for step in range(4):
        for inputs, target in data[2 * step:2 * step + 2]:
            (torch.nn.functional.mse_loss(net(inputs), target) / 2).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert torch.equal(bundle.net.weight, net.weight) and torch.equal(bundle.net.bias, net.bias)


def test_step_outputs_are_the_mean_over_micro_batches():
    bundle = ToyBundle(accumulation=2)
    losses = []

    class Losses(HookBase):
        def after_step(self):
            losses.append(float(self.trainer.step_outputs["loss"]))

    run(bundle, steps=1, accumulation=2, hooks=[Losses()])
    net, data = toy_network(), batches(2)
    with torch.no_grad():
        expected = sum(float(torch.nn.functional.mse_loss(net(x), y)) for x, y in data) / 2
    assert losses == [pytest.approx(expected, rel=1e-6)]


def test_a_skipped_outcome_reaches_the_nonfinite_handler():
    loop = run(ToyBundle(accumulation=2, skip_at={2}), steps=3, accumulation=2, loop_class=NonfiniteLoop)
    assert loop.nonfinite_at == [2] and loop.skipped_steps == 1


def test_a_rewind_from_the_step_goes_on_at_the_step_it_names_without_that_steps_after_step():
    class RewindOnce(TrainLoop):
        def _on_nonfinite_step(self):
            self.bundle_skip_at.clear()  # the retried step is finite
            raise Rewind(1)

    calls = []
    bundle = ToyBundle(accumulation=1, skip_at={3})
    loop = RewindOnce(bundle, batches(6), [], max_iter=4, accumulation=1, samples_per_step=4)
    loop.bundle_skip_at = bundle.skip_at
    loop.hooks = register_hooks(loop, [Recorder("a", calls)])
    loop.train()
    steps = [(stage, i) for _, stage, i in calls if stage in ("before_step", "after_step")]
    assert steps == [("before_step", 0), ("after_step", 0), ("before_step", 1), ("after_step", 1),
                     ("before_step", 2),  # rewound to 1: no after_step for it
                     ("before_step", 1), ("after_step", 1), ("before_step", 2), ("after_step", 2),
                     ("before_step", 3), ("after_step", 3)]
    assert bundle.epochs == [0, 1, 2, 1, 2, 3] and "extra" in loop.step_outputs


def test_an_older_bundle_returning_a_dict_is_read_with_its_last_step_skipped_flag():
    class DictBundle(ToyBundle):
        def train_micro_step(self, data, *, epoch=None):
            result = super().train_micro_step(data, epoch=epoch)
            self.last_step_skipped = result.skipped
            return dict(result.outputs)

    loop = run(DictBundle(accumulation=1, skip_at={1}), steps=2, accumulation=1, loop_class=NonfiniteLoop)
    assert loop.nonfinite_at == [1] and "loss" in loop.step_outputs


def test_a_raising_step_calls_after_failure_not_after_train():
    class Boom(ToyBundle):
        def train_micro_step(self, data, *, epoch=None):
            if epoch == 1:
                raise RuntimeError("boom")
            return super().train_micro_step(data, epoch=epoch)

    calls = []
    with pytest.raises(RuntimeError, match="boom"):
        run(Boom(accumulation=1), steps=3, accumulation=1, hooks=[Recorder("a", calls)])
    assert calls[-1] == ("a", "after_failure", 1) and ("a", "after_train", 1) not in calls


def test_trackers_get_the_logged_loss_in_csv_and_jsonl(tmp_path):
    logged = []

    class Evaluation(HookBase):  # what TrackersHook reads of an EvalHook
        latest, last_step = {}, -1

        def after_step(self):
            if self.trainer.iter == 1:
                self.latest, self.last_step = {"val/loss": 0.25}, 2

    class Means(HookBase):  # the window's own figures, as any writer gets them
        def after_step(self):
            if (self.trainer.iter + 1) % 2 == 0:
                logged.append(self.trainer.metrics.summary(self.trainer.iter + 1, self.trainer.model).scalars)

    evaluation = Evaluation()
    group = TrackerGroup.from_names(["csv", "jsonl"])
    trackers = TrackersHook(group, 2, evaluation, run_info=lambda: RunInfo(output_dir=str(tmp_path)))
    run(ToyBundle(accumulation=1), steps=4, accumulation=1, hooks=[evaluation, Means(), trackers])
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train] == [2, 4]
    assert [r["train/loss"] for r in train] == [m["train/loss"] for m in logged]  # the same floats, once computed
    assert {"speed/samples_per_s", "time/data_share", "train/extra"} <= set(train[0])
    assert any(r.get("val/loss") == 0.25 and r["step"] == 2 for r in records)
    with open(tmp_path / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["value"]) for r in rows if r["name"] == "train/loss"] == [m["train/loss"] for m in logged]
