"""Hooks: everything around the loop that is not the algorithm (logging, timing, evaluation).

The loop calls, for each hook in list order::

    hook.before_train()
    for step in range(start, max_steps):
        hook.before_step()
        trainer.run_step()
        hook.after_step()
    hook.after_train()

Order matters: the user's seed callbacks run first (they may read or change step outputs),
evaluation before logging (so a logged line can include fresh metrics), and the logger
last so it reports the time every other hook took.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import defaultdict
from typing import Any, Dict, Optional

import torch

from engine import comm

logger = logging.getLogger("engine")


class HookBase:
    """A hook holds its trainer by weak reference (``self.trainer``), set by ``register_hooks``."""

    trainer: Any = None

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_step(self) -> None: ...

    def after_step(self) -> None: ...


class PeriodicHook(HookBase):
    """A hook that acts every ``period`` optimizer steps and after the last one.

    ``period`` 0 means "only at the end".
    """

    def __init__(self, period: int) -> None:
        self.period = period

    def is_due(self) -> bool:
        done = self.trainer.iter + 1  # steps completed, counted from 1
        last = done == self.trainer.max_iter
        return last or (self.period > 0 and done % self.period == 0)


class SeedCallbacksHook(HookBase):
    """Calls the seed's overridable trainer methods: before_loop, iterate_after, after_loop."""

    def before_train(self) -> None:
        self.trainer.before_loop()

    def after_step(self) -> None:
        self.trainer.iterate_after(self.trainer.epoch, self.trainer.step_outputs)

    def after_train(self) -> None:
        self.trainer.after_loop()


class EvalHook(PeriodicHook):
    """Runs ``trainer.evaluate`` on the validation loader every ``period`` steps and at the end."""

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.latest: Dict[str, float] = {}

    def after_step(self) -> None:
        if self.trainer.val_loader is None or not self.is_due():
            return
        start = time.perf_counter()
        self.latest = {k: float(v) for k, v in self.trainer.run_evaluation().items()}
        self.trainer.latest_metrics = dict(self.latest)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in self.latest.items())
        logger.info(f"eval at step {self.trainer.iter + 1}: {shown}  ({time.perf_counter() - start:.1f}s)")


class LoggerHook(PeriodicHook):
    """Logs the mean of every step output over the period, the LR of each engine and samples/s.

    Step outputs stay tensors between logs: converting them every step would force a
    device sync per step on GPU.
    """

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self._sums: Dict[str, Any] = defaultdict(float)
        self._count = 0
        self._window_start: Optional[float] = None
        self._data_time = 0.0
        self._train_start = 0.0

    def before_train(self) -> None:
        self._train_start = self._window_start = time.perf_counter()

    def after_step(self) -> None:
        trainer = self.trainer
        for name, value in trainer.step_outputs.items():
            self._sums[name] = self._sums[name] + value
        self._count += 1
        self._data_time += trainer.data_time
        if not self.is_due():
            return
        now = time.perf_counter()
        elapsed = max(now - self._window_start, 1e-9)
        means = {k: float(v) / self._count for k, v in self._sums.items()}
        speed = self._count * trainer.global_batch_size / elapsed
        done = trainer.iter + 1
        eta = (trainer.max_iter - done) * elapsed / self._count
        lrs = "  ".join(f"lr/{k} {v:.3e}" for k, v in trainer.model.learning_rates().items())
        terms = "  ".join(f"{k} {v:.4f}" for k, v in means.items())
        epoch = f"epoch {trainer.epoch}  " if trainer.epoch_mode else ""
        logger.info(
            f"step {done}/{trainer.max_iter}  {epoch}{terms}  {lrs}  samples/s {speed:.1f}  "
            f"data {100 * self._data_time / elapsed:.0f}%  eta {_format_seconds(eta)}"
        )
        trainer.latest_logged = dict(means, samples_per_s=speed)
        self._sums.clear()
        self._count = 0
        self._data_time = 0.0
        self._window_start = time.perf_counter()

    def after_train(self) -> None:
        total = time.perf_counter() - self._train_start
        logger.info(f"training finished: {self.trainer.iter + 1 - self.trainer.start_iter} steps in {_format_seconds(total)}")


def _format_seconds(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def register_hooks(trainer: Any, hooks: list) -> list:
    """Attach ``trainer`` to each hook by weak proxy (no reference cycle) and return the list."""
    for hook in hooks:
        hook.trainer = weakref.proxy(trainer)
    return hooks


def reduce_mean(values: Dict[str, torch.Tensor], counts: torch.Tensor) -> Dict[str, float]:
    """Sum per-rank totals and counts over ranks; return global means."""
    names = sorted(values)
    stacked = torch.stack([values[n].double() for n in names] + [counts.double()])
    comm.all_reduce_sum(stacked)
    total = max(stacked[-1].item(), 1.0)
    return {n: stacked[i].item() / total for i, n in enumerate(names)}
