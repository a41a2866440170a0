"""``TrackersHook``: the metrics window's floats to the ``trainer.loggers`` trackers, on rank 0.

Opens a ``TrackerGroup`` at train start with the run's ``RunInfo``, writes the window's
scalars at each log boundary and the evaluation's metrics at the step they were computed,
and closes the group at the end, or as failed when training raised. TensorBoard is not a
tracker here: ``TensorboardHook`` owns its scalars (fed by the same window), so they are
written once.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from engine.events.hooks import PeriodicHook
from engine.trackers.base import RunInfo
from engine.trackers.group import TrackerGroup

logger = logging.getLogger("engine")


class TrackersHook(PeriodicHook):
    """Feeds a ``TrackerGroup`` from the loop's metrics window.

    Args:
        group: the unopened writers.
        period: the log period (the window's boundaries).
        evaluation: the hook whose ``latest`` / ``last_step`` hold the newest evaluation (or None).
        run_info: builds the ``RunInfo`` at train start, when the resumed step is known;
            default ``trainer.run_info()`` (called through the hook's weak trainer reference).
    """

    def __init__(self, group: TrackerGroup, period: int, evaluation: Any = None,
                 run_info: Optional[Callable[[], RunInfo]] = None) -> None:
        super().__init__(period)
        self.group = group
        self.run_info = run_info
        self.evaluation = evaluation
        self._open = False

    def before_train(self) -> None:
        self.group.open(self.run_info() if self.run_info is not None else self.trainer.run_info())
        self._open = True

    def after_step(self) -> None:
        trainer = self.trainer
        step = trainer.iter + 1
        if self.is_due():
            self.group.write(step, trainer.metrics.summary(step, trainer.model).scalars)
        evaluation = self.evaluation
        if evaluation is not None and evaluation.last_step == step:
            self.group.write(step, evaluation.latest)

    def after_train(self) -> None:
        self._close(failed=False)

    def after_failure(self) -> None:
        self._close(failed=True)

    def _close(self, failed: bool) -> None:
        if not self._open:
            return
        self._open = False
        if not failed:
            self.group.close()
            return
        try:  # the training's own error is the one to see
            self.group.close(failed=True)
        except Exception:
            logger.exception("a tracker failed to close after the training raised")
