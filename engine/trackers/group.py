"""``TrackerGroup``: several writers driven as one, so the loop opens, writes and closes once.

A backend that fails is reported, and costs the other backends nothing:

* ``open``: a writer that fails to open fails the start (a wrong URI, a full disk should
  be seen before hours of training); the writers already open are closed first.
* ``write``: a writer that raises (a tracking server gone for a while) is logged with its
  error the first time, counted after that, and still given later writes; the other
  writers and the training go on. ``close`` says how many writes each writer lost.
* ``close`` reaches every open writer even when one raises; the first error is raised
  after all had their turn, except when training itself raised (the context manager):
  then the training's exception propagates and the close error is logged.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence

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
        self.lost_writes: Dict[str, int] = {}  # writer name -> writes that raised

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
                self._close_quietly()
                raise
            self._opened.append(writer)

    def opened(self, run_info: RunInfo) -> "TrackerGroup":
        """``open``, returning the group (for ``with TrackerGroup(ws).opened(info) as trackers``)."""
        self.open(run_info)
        return self

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Hand ``metrics`` at ``step`` to every open writer; one that raises is logged and skipped."""
        if not metrics:
            return
        for writer in self._opened:
            try:
                writer.write(step, metrics)
            except Exception:
                name = _name(writer)
                lost = self.lost_writes[name] = self.lost_writes.get(name, 0) + 1
                if lost == 1:
                    logger.exception(f"tracker {name!r} failed to write step {step}; training goes on, "
                                     "and later failures of this tracker are counted, not logged")

    def close(self, failed: bool = False) -> None:
        """Close every open writer (all of them, even if one raises); the first error is re-raised."""
        opened, self._opened = self._opened, []
        for name, lost in self.lost_writes.items():
            logger.warning(f"tracker {name!r} lost {lost} write(s) of this run (the first error is logged above)")
        self.lost_writes = {}
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

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        if kind is None:
            self.close()
        else:
            self._close_quietly()

    def _close_quietly(self) -> None:
        """Close as failed where another exception is on its way: that one is the one to see."""
        try:
            self.close(failed=True)
        except Exception:
            logger.exception("a tracker failed to close after an earlier error")


def _name(writer: TrackerWriter) -> str:
    return getattr(writer, "name", "") or type(writer).__name__
