"""``TrackerGroup``: several writers driven as one, so the loop opens, writes and closes once.

One backend's failure does not cost the others their data: ``close`` reaches every
writer that was opened, even when one of them raises, and a writer whose ``open`` failed
is not written to or closed (nothing of it exists to close). The first error is raised
after every writer had its turn, except when training itself raised (the context manager):
then that exception propagates and a close error is logged.
"""

from __future__ import annotations

import logging
from typing import List, Mapping, Optional, Sequence

from engine.trackers.base import RunInfo, TrackerWriter, build_writers

logger = logging.getLogger("engine")


class TrackerGroup:
    """Open, write to and close a list of writers together (rank 0 only, like each writer).

    Args:
        writers: unopened writers, e.g. ``build_writers(cfg.TRAINER.LOGGERS)``.

    Usable as a context manager: ``with TrackerGroup(ws).opened(info) as trackers: ...``
    closes every writer on exit and marks the runs failed when the block raised.
    """

    def __init__(self, writers: Sequence[TrackerWriter]) -> None:
        self.writers: List[TrackerWriter] = list(writers)
        self._opened: List[TrackerWriter] = []

    @classmethod
    def from_names(cls, names: Sequence[str]) -> "TrackerGroup":
        """A group of the registered writers ``names`` lists (a checked ``trainer.loggers``)."""
        return cls(build_writers(names))

    def open(self, run_info: RunInfo) -> None:
        """Open each writer in order; if one fails, close the ones already open and raise."""
        for writer in self.writers:
            try:
                writer.open(run_info)
            except BaseException:
                self.close(failed=True)
                raise
            self._opened.append(writer)

    def opened(self, run_info: RunInfo) -> "TrackerGroup":
        self.open(run_info)
        return self

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Hand ``metrics`` at ``step`` to every open writer."""
        if metrics:
            for writer in self._opened:
                writer.write(step, metrics)

    def close(self, failed: bool = False) -> None:
        """Close every open writer (all of them, even if one raises); the first error is re-raised."""
        opened, self._opened = self._opened, []
        first: Optional[BaseException] = None
        for writer in opened:
            try:
                writer.close(failed=failed)
            except Exception as exc:  # the other backends still get closed
                first = first or exc
        if first is not None:
            raise first

    def __enter__(self) -> "TrackerGroup":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
            return
        try:
            self.close(failed=True)
        except Exception:  # the training's own exception is the one to see; this one is logged
            logger.exception("a tracker failed to close after training raised")
