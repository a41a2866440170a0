"""``bad_batches.jsonl``: one JSON object per (bad step, data-parallel rank), appended by global rank 0.

A line (keys in this order)::

    {"step": 12, "iteration": 11, "rank": 1, "reason": "nonfinite",
     "micro_batches": [[[index, sample_seed], ...], ...], "losses": {"loss": "inf", "l1": 0.25},
     "grad_norm": null, "z": null, "checkpoint": "iter_0000010", "epoch": 11}

``step`` is the 1-based step as logged, ``iteration`` the loop's 0-based ``iter``, ``rank``
the data-parallel rank, ``reason`` ``nonfinite`` or ``spike``. ``micro_batches`` holds, per
micro-batch of that rank in order, the ``(dataset index, sample seed)`` pairs the training
sampler gave (``TrainingSampler.items``): with ``dataloader.seed_per_sample`` they rebuild the
batch exactly. ``losses`` are that rank's step means of each output; ``grad_norm`` is the
generator engine's global gradient norm when DeepSpeed computed one; ``z`` the spike's
z-score; ``checkpoint`` the newest complete tag at that moment; ``epoch`` the loop counter
``run_step`` received. The file is strict JSON: a non-finite number is the string ``"nan"``,
``"inf"`` or ``"-inf"`` (``float()`` reads each back; :func:`read_bad_batches` does).

Lines are written whole (one ``write`` of every line of a step, then flush and fsync); a line
torn by a crash mid-write is cut off before the next append, with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

logger = logging.getLogger("engine")

#: the file's name in ``output_dir``
BAD_BATCHES_FILE = "bad_batches.jsonl"
REASONS = ("nonfinite", "spike")
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

#: (dataset index, sample seed) pairs of each micro-batch, in order
MicroBatches = List[List[Tuple[int, int]]]


def micro_batch_items(sampler: Any, start: int, micro_batch: int, accumulation: int) -> Optional[MicroBatches]:
    """The samples of one step's micro-batches on this rank, from the sampler's stream position ``start``.

    Args:
        sampler: the training sampler (``TrainingSampler.items``); another sampler gives None.
        start: samples this rank consumed before the step.
        micro_batch: samples per micro-batch.
        accumulation: micro-batches per step.

    Returns:
        Per micro-batch, its ``(index, sample_seed)`` pairs; None when the sampler cannot name them.
    """
    if not hasattr(sampler, "items"):
        return None
    return [sampler.items(start + m * micro_batch, micro_batch) for m in range(accumulation)]


def encode_number(value: Optional[float]) -> Any:
    """A float as JSON can hold it: finite as is, non-finite as its name, None as null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))


def decode_number(value: Any) -> Optional[float]:
    """The float :func:`encode_number` wrote."""
    if value is None:
        return None
    return _NONFINITE[value] if isinstance(value, str) else float(value)


def make_record(*, step: int, iteration: int, rank: int, reason: str, micro_batches: Optional[MicroBatches],
                losses: Dict[str, float], grad_norm: Optional[float], z: Optional[float],
                checkpoint: Optional[str], epoch: int) -> Dict[str, Any]:
    """One line's object, in the documented key order, numbers encoded for strict JSON."""
    if reason not in REASONS:
        raise ValueError(f"reason {reason!r} is not one of {REASONS}")
    batches = None if micro_batches is None else [[[int(i), int(s)] for i, s in batch] for batch in micro_batches]
    return {"step": int(step), "iteration": int(iteration), "rank": int(rank), "reason": reason,
            "micro_batches": batches, "losses": {k: encode_number(v) for k, v in losses.items()},
            "grad_norm": encode_number(grad_norm), "z": encode_number(z), "checkpoint": checkpoint,
            "epoch": int(epoch)}


def one_per_replica(parts: Sequence[Any], dp_rank: Callable[[Any], int]) -> List[Any]:
    """The first part of each data-parallel rank, in rank order.

    Why: every rank of one model replica (its pipeline stages, its tensor-parallel shards)
    read the same samples, so a step's gathered parts say each replica's story several times.
    """
    first: Dict[int, Any] = {}
    for part in parts:
        first.setdefault(int(dp_rank(part)), part)
    return [first[rank] for rank in sorted(first)]


class RecordLog:
    """Appends JSON lines to one file (``bad_batches.jsonl``, ``rollbacks.jsonl``); used on global rank 0 only.

    Args:
        path: the file; created on the first append.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._checked_tail = False

    def append(self, records: Sequence[Dict[str, Any]]) -> bool:
        """Write ``records`` as whole lines, flushed and fsynced; returns whether they were written.

        A write that fails (disk full, permissions) is logged as an error and training goes on:
        the record is a diagnosis, not worth the run.
        """
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
        try:
            if not self._checked_tail:
                cut_torn_line(self.path)
                self._checked_tail = True
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                data = text.encode("utf-8")
                while data:  # one write call in practice; a short write continues where it stopped
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            logger.error(f"could not append {len(records)} record(s) to {self.path}: {exc}")
            return False
        return True


class BadBatchLog(RecordLog):
    """The run's ``<output_dir>/bad_batches.jsonl``.

    Args:
        output_dir: the run's folder.
    """

    def __init__(self, output_dir: str) -> None:
        super().__init__(os.path.join(output_dir, BAD_BATCHES_FILE))


def cut_torn_line(path: str) -> None:
    """Drop a last line without its newline (a write cut by a crash), so the next append starts a line."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        whole = f.read().rfind(b"\n") + 1
        f.truncate(whole)
        f.flush()
        os.fsync(f.fileno())
    logger.warning(f"{path}: cut off a torn last line ({size - whole} bytes, an interrupted write)")


def read_bad_batches(path: str) -> List[Dict[str, Any]]:
    """Every record of a ``bad_batches.jsonl``, numbers decoded back to floats (``"inf"`` -> ``inf``).

    A torn last line (no newline) is skipped; any other line that is not JSON raises ``ValueError``
    naming the line.
    """
    records = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines[:-1], start=1):  # after the last "\n": empty, or a torn line
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not a JSON line ({exc})") from exc
        record["losses"] = {k: decode_number(v) for k, v in record["losses"].items()}
        record["grad_norm"], record["z"] = decode_number(record["grad_norm"]), decode_number(record["z"])
        records.append(record)
    return records
