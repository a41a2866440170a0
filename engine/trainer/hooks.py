"""Hooks: everything around the loop that is not the algorithm (logging, timing, evaluation).

The loop calls, for each hook in list order::

    hook.before_train()
    for step in range(start, max_steps):
        hook.before_step()
        trainer.run_step()
        hook.after_step()
    hook.after_train()

Order matters: the user's TrainFramework callbacks run first (they may read or change step outputs),
evaluation before logging (so a logged line can include fresh metrics), the logger near
the end so it reports the time every other hook took, and the checkpoint last. The full
default list and the reasons are in ``engine.trainer.hook_registry``.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any, Dict

import torch

# HookBase, PeriodicHook, StepWindow, reduce_mean and LoggerHook live lower (engine.events,
# engine.log.logger_hook) so log/ and checkpoint/ need not import trainer/; kept importable here.
from engine.events.hooks import HookBase, PeriodicHook
from engine.events.window import StepWindow, reduce_mean
from engine.log.logger_hook import LoggerHook
from engine.utils.signature import positional_capacity

__all__ = ["EvalHook", "HookBase", "LoggerHook", "PeriodicHook", "SeedCallbacksHook", "StepWindow",
           "TrainFrameworkCallbacksHook", "reduce_mean", "register_hooks"]

logger = logging.getLogger("engine")


class TrainFrameworkCallbacksHook(HookBase):
    """Calls the trainer methods TrainFramework (engine's predecessor) let a subclass override:
    before_loop, iterate_after, after_loop."""

    seed_form = False

    def before_train(self) -> None:
        # the seed's iterate_after(epoch) takes no loss_dict and follows the seed's loop cadence
        self.seed_form = positional_capacity(self.trainer.iterate_after) < 2
        self.trainer.before_loop()

    def after_step(self) -> None:
        trainer = self.trainer
        if not self.seed_form:
            trainer.iterate_after(trainer.loop_counter, trainer.step_outputs)
        elif trainer.ends_loop_turn:
            trainer.iterate_after(trainer.loop_counter)

    def after_train(self) -> None:
        self.trainer.after_loop()


SeedCallbacksHook = TrainFrameworkCallbacksHook  # the earlier name ("seed" meant TrainFramework), kept importable


class EvalHook(PeriodicHook):
    """Runs ``trainer.evaluate`` on the validation loader every ``period`` steps and at the end.

    Scalar results are this hook's ``latest`` (``trainer.latest_metrics`` reads them) and go
    to the event storage for TensorBoard; an ``images`` tensor in the result goes to the storage as an image grid.
    """

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.latest: Dict[str, float] = {}
        self.last_step = -1  # the step (counted from 1) of the latest evaluation

    def after_step(self) -> None:
        if self.trainer.val_loader is None or not self.is_due():
            return
        start = time.perf_counter()
        results = self.trainer.run_evaluation()
        images = {k: v for k, v in results.items() if isinstance(v, torch.Tensor) and v.dim() >= 3}
        self.latest = {k: float(v) for k, v in results.items() if k not in images}
        self.last_step = self.trainer.iter + 1
        storage = getattr(self.trainer, "storage", None)
        if storage is not None:
            storage.put_metrics(self.latest)
            for name, image in images.items():
                storage.put_image(name if "/" in name else f"val/{name}", image)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in self.latest.items())
        logger.info(f"eval at step {self.last_step}: {shown}  ({time.perf_counter() - start:.1f}s)")


def register_hooks(trainer: Any, hooks: list) -> list:
    """Attach ``trainer`` to each hook by weak proxy (no reference cycle) and return the list."""
    for hook in hooks:
        hook.trainer = weakref.proxy(trainer)
    return hooks
