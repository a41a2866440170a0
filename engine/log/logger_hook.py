"""The console logger hook: one line per period with the mean step outputs, the LRs, speed and ETA."""

from __future__ import annotations

import logging
import time
from typing import Dict

from engine.events.hooks import PeriodicHook
from engine.events.window import StepWindow

logger = logging.getLogger("engine")


class LoggerHook(PeriodicHook):
    """Logs the mean of every step output over the period, the LR of each engine and samples/s.

    Step outputs stay tensors between logs: converting them every step would force a
    device sync per step on GPU. ``ProgressHook`` (engine.log.progress) replaces the
    console line with a progress bar by overriding ``write``.
    """

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.window = StepWindow()
        self._train_start = 0.0

    def before_train(self) -> None:
        self._train_start = time.perf_counter()
        self.window.reset()

    def after_step(self) -> None:
        trainer = self.trainer
        self.window.add(trainer.step_outputs, trainer.data_time)
        if not self.is_due():
            return
        count, data_time = len(self.window), self.window.data_time
        means = self.window.means()
        elapsed = self.window.reset()
        speed = count * trainer.global_batch_size / elapsed
        done = trainer.iter + 1
        eta = (trainer.max_iter - done) * elapsed / count
        lrs = trainer.model.learning_rates()
        trainer.latest_logged = dict(means, samples_per_s=speed)
        lr_text = "  ".join(f"lr/{k} {v:.3e}" for k, v in lrs.items())
        terms = "  ".join(f"{k} {v:.4f}" for k, v in means.items())
        epoch = f"epoch {trainer.epoch}  " if trainer.epoch_mode else ""
        self.write(
            f"step {done}/{trainer.max_iter}  {epoch}{terms}  {lr_text}  samples/s {speed:.1f}  "
            f"data {100 * data_time / elapsed:.0f}%  eta {_format_seconds(eta)}",
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
