"""Asynchronous checkpoint writes: copy the state to host memory now, write and fsync it in a thread.

Why this shape: the step that saves should pay for a memory copy, not for the disk. DeepSpeed
hands every file it writes to its checkpoint engine (``engine.checkpoint_engine.save(state,
path)``); a ``CapturingCheckpointEngine`` stands in for it during one ``save_checkpoint``
and keeps a host copy of each state instead of writing it, and :class:`BackgroundWriter` then
writes those copies with :func:`engine.checkpoint.writer.write_file` (``torch.save`` with
write-behind, the writer of synchronous saves too: DeepSpeed's own format and file names, so a tag
written this way loads, resizes, exports and inspects exactly like a synchronous one) and
fsyncs them, while training goes on.

Why not DeepSpeed's decoupled or fast writers: the decoupled engine writes from helper
processes that need their own process group and a commit call DeepSpeed makes only for its
own ``latest``; the fast engine's files need its aio op (a JIT build) and have been reported
unloadable with ``weights_only=True``. Here the files are exactly what ``torch.save`` writes.

What makes a tag complete stays with ``engine.checkpoint.saver``: the marker is written only
after every rank reported its background write finished and fsynced.
"""

from __future__ import annotations

import copy
import enum
import functools
import os
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import torch

from engine.checkpoint import layout
from engine.checkpoint.writer import write_file

#: Harness only (benchmarks/fault_injection.py): seconds the background writer sleeps after each
#: file, so that a random SIGKILL lands inside the write. Unset (0) in real runs.
FAULT_WRITE_DELAY_ENV = "ENGINE_FAULT_WRITE_DELAY"


class HostBuffers:
    """Host tensors of the previous save, reused by the next one of the same shapes.

    Why: copying into fresh memory pays a page fault per 4 KiB page (on a loaded host that
    costs more than the copy itself), and from a GPU only pinned memory copies at full speed.
    Keeping the buffers holds one host copy of this rank's checkpoint state between saves,
    which the save in flight needs anyway.
    """

    def __init__(self) -> None:
        self._free: Dict[Tuple[Tuple[int, ...], torch.dtype], List[torch.Tensor]] = {}

    def take(self, like: torch.Tensor) -> torch.Tensor:
        """A host tensor shaped like ``like`` (reused when one is free), not yet filled."""
        free = self._free.get((tuple(like.shape), like.dtype))
        if free:
            return free.pop()
        pin = like.is_cuda
        return torch.empty(like.shape, dtype=like.dtype, pin_memory=pin)

    def give_back(self, obj: Any) -> None:
        """Every tensor inside ``obj`` becomes free for the next save."""
        if isinstance(obj, torch.Tensor):
            if obj.is_contiguous() and obj.storage_offset() == 0:
                self._free.setdefault((tuple(obj.shape), obj.dtype), []).append(obj)
        elif isinstance(obj, dict):
            for value in obj.values():
                self.give_back(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                self.give_back(value)


def snapshot(obj: Any, memo: Optional[Dict[Any, torch.Tensor]] = None, buffers: Optional[HostBuffers] = None) -> Any:
    """A copy of ``obj`` whose tensors are host copies; the same tensor view twice stays one copy.

    Containers are rebuilt (dict subclasses keep their type); immutable leaves (numbers,
    strings, enums, dtypes, shapes) are kept as they are; any other object is deep-copied:
    DeepSpeed's states hold live objects next to tensors (its loss scaler, whose scale
    changes as training goes on), and the background write must pickle them as they were
    at the save. ``buffers``: reuse the host tensors of an earlier save where the shapes match.
    """
    memo = {} if memo is None else memo
    if isinstance(obj, torch.Tensor):
        key = (obj.untyped_storage().data_ptr(), obj.storage_offset(), tuple(obj.shape), obj.stride(), obj.dtype) \
            if obj.numel() else ("empty", id(obj))
        if key not in memo:
            if buffers is None:
                memo[key] = obj.detach().to("cpu", copy=True)
            else:
                memo[key] = buffers.take(obj).copy_(obj.detach(), non_blocking=obj.is_cuda)
        return memo[key]
    if isinstance(obj, dict):
        copied = {k: snapshot(v, memo, buffers) for k, v in obj.items()}
        if type(obj) is dict:
            return copied
        try:
            return type(obj)(copied)
        except TypeError:  # a dict subclass with another constructor: a plain dict holds the same data
            return copied
    if isinstance(obj, list):
        return [snapshot(v, memo, buffers) for v in obj]
    if isinstance(obj, tuple):
        if not any(isinstance(v, (torch.Tensor, dict, list, tuple)) for v in obj):
            return obj  # immutable and tensor-free (torch.Size, shapes, names): kept as it is, type and all
        items = [snapshot(v, memo, buffers) for v in obj]
        if hasattr(obj, "_fields"):
            return type(obj)(*items)  # namedtuples take their fields positionally
        return type(obj)(items) if type(obj) is not tuple else tuple(items)
    return _frozen(obj)


_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, enum.Enum, torch.dtype, torch.device, torch.Size,
              frozenset, range, type)


def _frozen(obj: Any) -> Any:
    """``obj`` as it is now: itself when immutable, else a deep copy (itself if it cannot be copied)."""
    if isinstance(obj, _IMMUTABLE):
        return obj
    try:
        return copy.deepcopy(obj)
    except Exception:  # noqa: BLE001 - an object that refuses copying is written as it is at write time
        return obj


def capturing_checkpoint_engine(buffers: Optional[HostBuffers] = None) -> Any:
    """A fresh ``CapturingCheckpointEngine`` (see :func:`_capturing_class`) filling ``buffers``."""
    return _capturing_class()(buffers)


def __getattr__(name: str) -> Any:
    """``CapturingCheckpointEngine`` stays importable by name; the class is made on first access."""
    if name == "CapturingCheckpointEngine":
        return _capturing_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.lru_cache(maxsize=None)
def _capturing_class() -> type:
    """The DeepSpeed checkpoint engine that records ``(path, host copy)`` instead of writing.

    Made on first use: deepspeed is heavy to import (~3 CPU s), and the trainer imports this
    package at module level whether or not it ever saves asynchronously.
    """
    from deepspeed.runtime.checkpoint_engine.checkpoint_engine import CheckpointCommitInfo, CheckpointEngine  # lazy: heavy

    class CapturingCheckpointEngine(CheckpointEngine):
        """Set as ``engine.checkpoint_engine`` for one ``save_checkpoint`` call only; loading is
        never done through it."""

        def __init__(self, buffers: Optional[HostBuffers] = None) -> None:
            super().__init__()
            self.name = "EngineCapturingCheckpointEngine"
            self.buffers = buffers
            self.files: List[Tuple[str, Any]] = []

        def create(self, info: CheckpointCommitInfo) -> None:
            pass

        def preserves_storage_sharing(self) -> bool:
            """False: DeepSpeed then skips its own clone of the module state; :func:`snapshot` is the one copy."""
            return False

        def save(self, state_dict: Any, path: str) -> None:
            self.files.append((path, snapshot(state_dict, buffers=self.buffers)))

        def load(self, path: str, map_location: Any = None) -> Any:
            raise RuntimeError("CapturingCheckpointEngine only saves")

        def commit(self, info: CheckpointCommitInfo) -> bool:
            return True

    return CapturingCheckpointEngine


def _cuda_in_use() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


class BackgroundWriter:
    """One thread that writes and fsyncs the files of at most one save at a time.

    ``submit`` returns at once; ``finished`` says (without blocking) whether the last
    submitted save is on disk; ``wait`` blocks until it is and re-raises its error, if any.
    The thread is not a daemon: a process that ends normally (or by an exception) waits for
    the files it was writing. Completeness is not its business: a tag without its marker is
    skipped by resume, whatever the writer did.
    """

    def __init__(self) -> None:
        self.buffers = HostBuffers()  # taken by the capture on the training thread, given back here after writing
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self.last_seconds = 0.0
        self.last_bytes = 0

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def submit(self, files: List[Tuple[str, Any]], folder: str) -> None:
        """Write ``files`` (path, object) with ``torch.save``, then fsync everything under ``folder``.

        Raises:
            RuntimeError: when a save is still in flight (the caller waits first).
        """
        if self._thread is not None:
            raise RuntimeError("BackgroundWriter: a save is still in flight; wait() first")
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(files, folder), name="engine-ckpt-writer")
        self._thread.start()

    def finished(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    def wait(self) -> None:
        """Block until the save in flight (if any) is written; re-raise its error."""
        if self._thread is None:
            return
        self._thread.join()
        self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _run(self, files: List[Tuple[str, Any]], folder: str) -> None:
        start = time.perf_counter()
        delay = float(os.environ.get(FAULT_WRITE_DELAY_ENV) or 0)
        try:
            if _cuda_in_use():
                torch.cuda.synchronize()  # the non-blocking device-to-host copies have landed
            for path, obj in files:
                write_file(path, obj)
                if delay > 0:
                    time.sleep(delay)
            for _, obj in files:
                self.buffers.give_back(obj)
            files.clear()
            layout.fsync_tree(folder)
            self.last_bytes = sum(layout.build_manifest(folder).values())
        except BaseException as exc:  # reported to the training thread by wait()
            self._error = exc
        self.last_seconds = time.perf_counter() - start
