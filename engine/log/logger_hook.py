"""The console logger hook: one line per period with the mean step outputs, the LRs, speed and ETA."""

from __future__ import annotations

import logging
import time
from typing import Dict

from engine.events.hooks import PeriodicHook

logger = logging.getLogger("engine")


class LoggerHook(PeriodicHook):
    """Logs the mean of every step output over the period, the LR of each engine and samples/s.

    The figures come from the loop's metrics window (``trainer.metrics``, engine.log.metrics),
    which every writer shares. ``ProgressHook`` (engine.log.progress) replaces the console
    line with a progress bar by overriding ``write``.
    """

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self._train_start = 0.0

    def before_train(self) -> None:
        self._train_start = time.perf_counter()

    def after_step(self) -> None:
        if not self.is_due():
            return
        trainer = self.trainer
        done = trainer.iter + 1
        summary = trainer.metrics.summary(done, trainer.model)
        means, lrs = summary.means, summary.lrs
        eta = (trainer.max_iter - done) * summary.elapsed / summary.steps
        lr_text = "  ".join(f"lr/{k} {v:.3e}" for k, v in lrs.items())
        terms = "  ".join(f"{k} {v:.4f}" for k, v in means.items())
        epoch = f"epoch {trainer.epoch}  " if trainer.epoch_mode else ""
        utilisation = summary.scalars.get("perf/mfu")
        mfu_text = f"mfu {100 * utilisation:.1f}%  " if utilisation is not None else ""
        self.write(
            f"step {done}/{trainer.max_iter}  {epoch}{terms}  {lr_text}  samples/s {summary.samples_per_s:.1f}  "
            f"{mfu_text}data {100 * summary.data_share:.0f}%  eta {_format_seconds(eta)}",
            means, lrs,
        )

    def write(self, line: str, means: Dict[str, float], lrs: Dict[str, float]) -> None:
        logger.info(line)

    def after_train(self) -> None:
        total = time.perf_counter() - self._train_start
        logger.info(f"training finished: {self.trainer.iter + 1 - self.trainer.start_iter} steps in {_format_seconds(total)}")


def _format_seconds(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
