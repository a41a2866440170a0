"""A progress bar on a terminal, plain log lines elsewhere (CI, files, docker logs).

A bar in a file or a CI log is a mess of carriage returns, and log lines under a live bar
break it; so rank 0 shows exactly one of the two on the console. The log file gets the
periodic lines in both cases.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Dict, List, Optional, Tuple

from engine import comm
from engine.log.logger_hook import LoggerHook

logger = logging.getLogger("engine")

PROGRESS_MODES = ("auto", "bar", "log")


def use_progress_bar(mode: str = "auto", stream: Any = None, rank: Optional[int] = None) -> bool:
    """Whether this rank shows a bar: ``bar``/``log`` force it; ``auto`` means rank 0 on a terminal."""
    rank = comm.get_rank() if rank is None else rank
    if rank != 0 or mode == "log":
        return False
    if mode == "bar":
        return True
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class ProgressHook(LoggerHook):
    """``LoggerHook`` whose console output is a tqdm bar: step, loss, LR, it/s and ETA.

    The periodic line still goes to the log file (``extra={"console": False}`` is dropped by
    the console handler), and other log messages are printed above the bar, not through it.
    """

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.bar: Any = None
        self._swapped: List[Tuple[logging.StreamHandler, Any]] = []

    def before_train(self) -> None:
        super().before_train()
        from tqdm import tqdm

        trainer = self.trainer
        self.bar = tqdm(total=trainer.max_iter, initial=trainer.start_iter, desc="train", unit="it",
                        file=sys.stdout, dynamic_ncols=True, smoothing=0.05, leave=True)
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler and handler.stream in (sys.stdout, sys.stderr):
                self._swapped.append((handler, handler.setStream(_AboveBar(handler.stream))))

    def after_step(self) -> None:
        self.bar.update(1)  # tqdm redraws at most every 0.1 s; the call itself is cheap
        super().after_step()

    def write(self, line: str, means: Dict[str, float], lrs: Dict[str, float]) -> None:
        logger.info(line, extra={"console": False})
        shown = {"loss": f"{means['loss']:.4f}"} if "loss" in means else {}
        shown.update((f"lr/{k}" if len(lrs) > 1 else "lr", f"{v:.2e}") for k, v in lrs.items())
        self.bar.set_postfix(shown, refresh=False)

    def after_train(self) -> None:
        self._close_bar()
        super().after_train()

    def after_failure(self) -> None:
        self._close_bar()  # the error is then printed plainly, not through a dead bar

    def _close_bar(self) -> None:
        """Close the bar and give the console handlers their streams back."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        for handler, stream in self._swapped:
            handler.setStream(stream)
        self._swapped = []


class _AboveBar:
    """A stream for logging handlers that prints through ``tqdm.write`` so the bar is redrawn below."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        from tqdm import tqdm

        text = text.rstrip("\n")
        if text:
            tqdm.write(text, file=self.stream)

    def flush(self) -> None:
        self.stream.flush()
