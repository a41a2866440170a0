"""``csv`` and ``jsonl``: metrics as plain files in ``output_dir``, readable without any tracker.

Both append one record per write and flush it, so a killed run leaves every record it
wrote (a half-written last line at most, which the reader of a resumed run never sees:
open rewrites the file without it). ``close`` also fsyncs, so the finished file survives
a power loss.

CSV is in the long form ``step,name,value,time``, one row per metric: the metric names
are not known up front (``val/...`` appears at the first evaluation, a loss term when the
model first reports it), and a wide table would need its header, hence the whole file,
rewritten each time a new name appears. A long table never changes its header, appends in
constant time, and pivots in one line (``pandas.read_csv(p).pivot(index="step",
columns="name", values="value")``). Values are written with ``repr``, which reads back as
the same float, ``nan`` and ``inf`` included.

JSONL holds one object per write: ``{"step": 20, "time": <unix s>, "train/loss": ..., ...}``.
JSON has no NaN or infinity, so a non-finite value is written as ``null``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from typing import IO, Iterable, List, Mapping, Optional

from engine.trackers.base import TRACKER_REGISTRY, RunInfo, TrackerWriter
from engine.utils.fileio import atomic_write_text


class LineFileWriter(TrackerWriter):
    """A writer that appends text lines to ``output_dir/<file_name>``; subclasses format them.

    On resume (``run_info.start_step > 0``) the existing file is kept up to that step:
    records a killed run wrote after its last checkpoint are dropped, so the resumed run's
    records follow on without repeating a step. A fresh run starts a new file.
    """

    file_name = ""
    header: Optional[str] = None

    def __init__(self) -> None:
        self.path = ""
        self._file: Optional[IO[str]] = None

    def open(self, run_info: RunInfo) -> None:
        self.path = os.path.join(run_info.output_dir, self.file_name)
        kept = self._kept_lines(run_info.start_step) if run_info.start_step > 0 else []
        text = "".join(line + "\n" for line in ([self.header] if self.header else []) + kept)
        atomic_write_text(self.path, text)  # never a mix of the old file and the new one
        self._file = open(self.path, "a", encoding="utf-8", newline="")

    def _kept_lines(self, start_step: int) -> List[str]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
        records = lines[1:] if self.header else lines
        kept = []
        for line in records:
            step = self.step_of(line)
            if step is not None and step <= start_step:
                kept.append(line)
        return kept

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if self._file is None:
            raise RuntimeError(f"{type(self).__name__}.write before open")
        self._file.write("".join(line + "\n" for line in self.format_lines(int(step), metrics, time.time())))
        self._file.flush()  # a killed run keeps what it logged; fsync waits for close

    def close(self, failed: bool = False) -> None:
        if self._file is None:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None

    def format_lines(self, step: int, metrics: Mapping[str, float], now: float) -> Iterable[str]:
        """The lines of one write (without newlines)."""
        raise NotImplementedError

    def step_of(self, line: str) -> Optional[int]:
        """The step a line of an earlier run's file records, or None for a damaged line."""
        raise NotImplementedError


@TRACKER_REGISTRY.register()
class CsvWriter(LineFileWriter):
    """``output_dir/metrics.csv``: one ``step,name,value,time`` row per metric (the module doc says why)."""

    name = "csv"
    file_name = "metrics.csv"
    header = "step,name,value,time"

    def format_lines(self, step: int, metrics: Mapping[str, float], now: float) -> Iterable[str]:
        out = io.StringIO()
        rows = csv.writer(out, lineterminator="\n")
        for metric, value in metrics.items():
            rows.writerow([step, metric, repr(float(value)), f"{now:.3f}"])
        return out.getvalue().splitlines()

    def step_of(self, line: str) -> Optional[int]:
        fields = next(csv.reader([line]), [])
        if len(fields) != 4:
            return None
        try:
            float(fields[2])
            return int(fields[0])
        except ValueError:
            return None


@TRACKER_REGISTRY.register()
class JsonlWriter(LineFileWriter):
    """``output_dir/metrics.jsonl``: one JSON object per write (non-finite values as ``null``)."""

    name = "jsonl"
    file_name = "metrics.jsonl"

    def format_lines(self, step: int, metrics: Mapping[str, float], now: float) -> Iterable[str]:
        record = {"step": step, "time": round(now, 3)}
        for metric, value in metrics.items():
            value = float(value)
            record[metric] = value if math.isfinite(value) else None
        return [json.dumps(record, allow_nan=False)]

    def step_of(self, line: str) -> Optional[int]:
        try:
            record = json.loads(line)
        except ValueError:
            return None
        step = record.get("step") if isinstance(record, dict) else None
        return step if isinstance(step, int) else None
