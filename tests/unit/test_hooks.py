"""Hooks: period logic, the step window, the hook registry and default order, progress vs log lines."""

from types import SimpleNamespace

import pytest
import torch

from engine.checkpoint.checkpointer import Checkpointer
from engine.errors import ConfigError, RegistryError
from engine.log.metrics import MetricsWindow
from engine.log.progress import ProgressHook, use_progress_bar
from engine.events.storage import EventStorage
from engine.sentinel.sentinel import BadBatchSentinel
from engine.trainer.hook_registry import HOOK_REGISTRY, build_config_hooks, default_hooks
from engine.events.hooks import PeriodicHook
from engine.events.window import StepWindow
from engine.trainer.hooks import register_hooks


class Trainer:
    """The attributes hooks read, nothing else."""

    def __init__(self, max_iter=10, start_iter=0):
        self.iter, self.max_iter, self.start_iter = start_iter, max_iter, start_iter


def due_steps(period, max_iter=10):
    trainer = Trainer(max_iter)
    hook = register_hooks(trainer, [PeriodicHook(period)])[0]
    steps = []
    for trainer.iter in range(max_iter):
        if hook.is_due():
            steps.append(trainer.iter + 1)
    return steps


@pytest.mark.parametrize("period,expected", [(3, [3, 6, 9, 10]), (5, [5, 10]), (1, list(range(1, 11))),
                                             (0, [10]), (20, [10])])
def test_periodic_hook_is_due_every_period_and_after_the_last_step(period, expected):
    assert due_steps(period) == expected


def test_step_window_means_mixed_tensors_and_floats_then_resets():
    window = StepWindow()
    window.add({"loss": torch.tensor(1.0), "acc": 0.5}, data_time=0.1)
    window.add({"loss": torch.tensor([3.0]), "acc": 1.0, "extra": torch.tensor(2.0)}, data_time=0.3)
    assert len(window) == 2 and window.data_time == pytest.approx(0.4)
    assert window.means() == pytest.approx({"loss": 2.0, "acc": 0.75, "extra": 2.0})
    assert window.reset() > 0 and len(window) == 0 and window.data_time == 0.0


def test_storage_keeps_step_means_images_and_metrics_apart():
    storage = EventStorage()
    value = torch.tensor(2.0)
    storage.put_scalar("loss", value)
    storage.put_scalar("images", torch.zeros(2, 3, 4, 4))
    assert storage.pop_step()["loss"] is value  # one put: no division, no new tensor
    storage.put_scalar("loss", torch.tensor(1.0))
    storage.put_scalar("loss", torch.tensor(3.0))
    assert float(storage.step_means()["loss"]) == 2.0  # what the step reported so far, kept for pop_step
    assert float(storage.pop_step()["loss"]) == 2.0 and storage.step_means() == {}
    assert list(storage.pop_images()) == ["images"] and storage.pop_images() == {}
    storage.put_metrics({"val/loss": 0.5})
    assert storage.pop_metrics() == {"val/loss": 0.5} and storage.pop_metrics() == {}


@HOOK_REGISTRY.register()
class CountingHook(PeriodicHook):
    """A user hook as a config would name it."""

    def __init__(self, period, label="x"):
        super().__init__(period)
        self.label = label


def test_hook_registry_builds_config_hooks_in_list_order():
    hooks = build_config_hooks([dict(name="CountingHook", period=3, label="a"), dict(name="CountingHook", period=0)])
    assert [(h.period, h.label) for h in hooks] == [(3, "a"), (0, "x")]
    assert build_config_hooks(None) == [] and len(build_config_hooks(dict(name="LoggerHook", period=2))) == 1


def test_hook_registry_errors_name_the_config_path():
    with pytest.raises(RegistryError, match=r"trainer.hooks\[0\].name.*CountingHok.*Did you mean 'CountingHook'"):
        build_config_hooks([dict(name="CountingHok")])
    with pytest.raises(ConfigError, match=r"trainer.hooks\[1\]: unexpected parameter 'perod'"):
        build_config_hooks([dict(name="CountingHook", period=1), dict(name="CountingHook", perod=1)])


def _cfg(**trainer_keys):
    trainer = dict(LOG_PERIOD=5, TENSORBOARD=True, LOGGERS=["tensorboard"], PROGRESS="log", HOOKS=[], DIST_TIMEOUT=60.0)
    trainer.update(trainer_keys)
    solver = SimpleNamespace(EVAL_PERIOD=0, BEST_METRIC="", BEST_MODE="max", CHECKPOINT_PERIOD=0, STOP_AT_ITER=0,
                             SAVE_ON_SIGNAL=["SIGTERM"], CHECKPOINT_ASYNC=False, SPIKE=SimpleNamespace(ENABLED=False))
    return SimpleNamespace(TRAINER=SimpleNamespace(**trainer), SOLVER=solver, OUTPUT_DIR="out")


def test_default_hook_order_with_user_hooks_before_the_checkpoint():
    cfg = _cfg(HOOKS=[dict(name="CountingHook", period=2)])
    cfg.SOLVER.BEST_METRIC = "val/loss"
    checkpoint = Checkpointer("out", max_keep=1)  # both checkpoint hooks are given the trainer's
    names = [type(h).__name__ for h in default_hooks(SimpleNamespace(cfg=cfg, checkpoint=checkpoint))]
    assert names == ["TrainFrameworkCallbacksHook", "EvalHook", "BestCheckpointHook", "TensorboardHook", "LoggerHook",
                     "CountingHook", "CheckpointHook"]
    hooks = default_hooks(SimpleNamespace(cfg=_cfg(TENSORBOARD=False, PROGRESS="bar"), checkpoint=checkpoint))
    assert hooks[-1].checkpointer is checkpoint
    names = [type(h).__name__ for h in hooks]
    assert names == ["TrainFrameworkCallbacksHook", "EvalHook", "ProgressHook", "CheckpointHook"]
    cfg = _cfg(TENSORBOARD=False, LOGGERS=["csv", "jsonl"])  # trackers go between TensorBoard's place and the logger
    names = [type(h).__name__ for h in default_hooks(SimpleNamespace(cfg=cfg, checkpoint=checkpoint))]
    assert names == ["TrainFrameworkCallbacksHook", "EvalHook", "TrackersHook", "LoggerHook", "CheckpointHook"]
    cfg = _cfg(TENSORBOARD=False)
    cfg.SOLVER.SPIKE.ENABLED = True  # the spike test judges the loss before any other hook sees the outputs
    sentinel = BadBatchSentinel("out")
    hooks = default_hooks(SimpleNamespace(cfg=cfg, checkpoint=checkpoint, sentinel=sentinel))
    assert [type(h).__name__ for h in hooks] == ["SpikeHook", "TrainFrameworkCallbacksHook", "EvalHook", "LoggerHook",
                                                 "CheckpointHook"]
    assert hooks[0].sentinel is sentinel


class Stream:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("mode,tty,rank,expected", [
    ("auto", True, 0, True), ("auto", False, 0, False), ("auto", True, 1, False),
    ("bar", False, 0, True), ("log", True, 0, False), ("bar", True, 1, False),
])
def test_progress_bar_only_on_rank0_terminal_unless_forced(mode, tty, rank, expected):
    assert use_progress_bar(mode, Stream(tty), rank=rank) is expected
    assert use_progress_bar("auto", object(), rank=0) is False  # a stream without isatty


def test_progress_hook_shows_a_bar_and_sends_period_lines_to_the_file_only(capsys, tmp_path):
    import logging

    from engine.log.logger import setup_logger

    log = setup_logger(str(tmp_path), "train", rank=0)
    trainer = Trainer(max_iter=4)
    trainer.step_outputs, trainer.data_time, trainer.global_batch_size = {"loss": torch.tensor(0.25)}, 0.0, 8
    trainer.epoch_mode = False
    trainer.model = SimpleNamespace(learning_rates=lambda: {"generator": 0.01})
    trainer.metrics = MetricsWindow(trainer.global_batch_size)
    hook = register_hooks(trainer, [ProgressHook(2)])[0]
    hook.before_train()
    for trainer.iter in range(4):
        trainer.metrics.add(trainer.step_outputs, trainer.data_time)  # what the loop does after each step
        hook.after_step()
    log.info("a message above the bar")
    hook.after_train()
    out = capsys.readouterr().out
    assert "4/4" in out and "loss=0.2500" in out and "lr=1.00e-02" in out
    assert "a message above the bar" in out and "step 4/4" not in out  # period lines: file only
    for handler in log.handlers:
        handler.flush()
    assert "step 4/4  loss 0.2500" in (tmp_path / "train.log").read_text()
    logging.getLogger("engine").handlers.clear()

