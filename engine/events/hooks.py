"""The hook protocol the loop calls, at the bottom so log/ and checkpoint/ hooks need not import trainer/.

A hook is told four moments of a run (``before_train``, ``before_step``, ``after_step``,
``after_train``), and ``after_failure`` instead of ``after_train`` when a step raised; it
reads the loop and writes only its own state. The order of the list and the default hooks are the trainer's business
(``engine.trainer.hook_registry``).
"""

from __future__ import annotations

from typing import Any


class HookBase:
    """A hook holds its trainer by weak reference (``self.trainer``), set by ``register_hooks``."""

    trainer: Any = None

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_step(self) -> None: ...

    def after_step(self) -> None: ...

    def after_failure(self) -> None:
        """Training raised: release what ``before_train`` opened (files, runs); the error propagates after."""


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
