"""Checkpoint files written at the speed of the disk: ``torch.save`` streamed with write-behind.

Why: ``torch.save(obj, path)`` followed by one fsync at the end runs in two serial phases: the
serialisation fills the page cache, then the fsync waits while the disk writes all of it. Here
``torch.save`` writes into :class:`WriteBehindFile`, which hands the kernel every
:data:`CHUNK_BYTES` at once for write-out (``sync_file_range``) and waits for the chunk before the
previous one: the disk writes while torch serialises the next tensor, the final fsync finds almost
nothing left to do, and the dirty memory a save holds stays at two chunks per file instead of the
whole checkpoint (it matters on a host whose memory the training already fills). Without
``sync_file_range`` (not Linux) the file is written as before and the fsync does all the work.

The files are exactly what ``torch.save`` writes (its zip format, DeepSpeed's objects), so loading,
resizing, export and ``weights_only=True`` are unchanged. A failed write raises ``OSError`` with its
errno and the file's path (torch's own file writer reports neither) and removes the partial file.

:class:`StreamingCheckpointEngine` puts this writer under DeepSpeed: set as an engine's
``checkpoint_engine`` during one ``save_checkpoint``, every file DeepSpeed saves is written this way
and fsynced before ``save`` returns.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
from typing import Any, Callable, Iterator, Optional

import torch

#: bytes handed to the kernel for write-out at a time; two of them per file are dirty at most
CHUNK_BYTES = 32 * 2**20

_WAIT_BEFORE, _START_WRITE, _WAIT_AFTER = 1, 2, 4  # SYNC_FILE_RANGE_* of <fcntl.h>


def _find_sync_file_range() -> Optional[Callable[..., int]]:
    """libc's ``sync_file_range`` (Linux only; Python's ``os`` does not wrap it), or None."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _find_sync_file_range()


class WriteBehindFile(io.RawIOBase):
    """A write-only file whose bytes go to disk while it is being written (see the module docstring).

    Args:
        path: the file to create (truncated if it exists).
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        self._size = 0  # bytes written so far
        self._started = 0  # bytes whose write-out was started
        self._settled = 0  # bytes known to be on disk
        self._behind = _sync_file_range is not None
        self.failure: Optional[OSError] = None  # the OS error of a failed write, kept for write_file

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, data: Any) -> int:
        """Write all of ``data`` (torch hands whole tensor storages at once), then push full chunks out."""
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += os.write(self._fd, view[done:done + CHUNK_BYTES])
                while self._behind and self._size + done - self._started >= CHUNK_BYTES:
                    self._push_chunk()
        except OSError as exc:
            self.failure = exc  # torch's zip writer turns it into an errno-less RuntimeError
            raise
        self._size += done
        return done

    def _push_chunk(self) -> None:
        """Start writing the next full chunk out; wait for the one before it (the disk keeps one queued)."""
        self._range(self._started, CHUNK_BYTES, _START_WRITE)
        self._started += CHUNK_BYTES
        if self._started - self._settled > CHUNK_BYTES:
            self._range(self._settled, CHUNK_BYTES, _WAIT_BEFORE | _START_WRITE | _WAIT_AFTER)
            self._settled += CHUNK_BYTES

    def _range(self, offset: int, length: int, flags: int) -> None:
        if _sync_file_range(self._fd, offset, length, flags) != 0:
            self._behind = False  # a filesystem without it (EINVAL, ENOSYS): the final fsync does the work

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def sync(self) -> None:
        """fsync: every byte written is on disk when this returns."""
        os.fsync(self._fd)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def write_file(path: str, obj: Any) -> int:
    """``torch.save(obj)`` to ``path`` with write-behind, fsynced; returns the file's size.

    Raises:
        OSError: the write failed (errno kept, ``filename`` is ``path``); no partial file is left.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    f = WriteBehindFile(path)
    try:
        with f:
            torch.save(obj, f)
            f.sync()
            return f.size
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(path)
        failure = f.failure or (exc if isinstance(exc, OSError) else None)
        if failure is not None and failure.errno is not None:
            raise OSError(failure.errno, failure.strerror, path) from exc
        raise

def streaming_checkpoint_engine() -> Any:
    """A fresh ``StreamingCheckpointEngine`` (see :func:`_streaming_class`)."""
    return _streaming_class()()


def __getattr__(name: str) -> Any:
    """``StreamingCheckpointEngine`` stays importable by name; the class is made on first access."""
    if name == "StreamingCheckpointEngine":
        return _streaming_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.lru_cache(maxsize=None)
def _streaming_class() -> type:
    """DeepSpeed checkpoint engine that writes every file with :func:`write_file` (fsynced on return).

    Saving only: set as ``engine.checkpoint_engine`` for one ``save_checkpoint`` call (see
    :func:`checkpoint_engine_of`); loading goes through the engine's own checkpoint engine.
    Made on first use: deepspeed is heavy to import (~3 CPU s) and the trainer imports this
    package at module level.
    """
    from deepspeed.runtime.checkpoint_engine.checkpoint_engine import CheckpointCommitInfo, CheckpointEngine  # lazy: heavy

    class StreamingCheckpointEngine(CheckpointEngine):
        def __init__(self) -> None:
            super().__init__()
            self.name = "EngineStreamingCheckpointEngine"
            self.bytes_written = 0

        def create(self, info: CheckpointCommitInfo) -> None:
            pass

        def save(self, state_dict: Any, path: str) -> None:
            self.bytes_written += write_file(path, state_dict)

        def load(self, path: str, map_location: Any = None) -> Any:
            raise RuntimeError("StreamingCheckpointEngine only saves")

        def commit(self, info: CheckpointCommitInfo) -> bool:
            return True

    return StreamingCheckpointEngine


def replaceable(checkpoint_engine: Any) -> bool:
    """True for DeepSpeed's default engine writing the zip format: ours writes the same files faster.

    Any other engine (the user chose one in the DeepSpeed config: decoupled, fast, DataStates, or the
    legacy format via ``checkpoint_serialization: false``) is kept for synchronous saves.
    """
    # lazy: heavy; a DeepSpeed engine exists here, so deepspeed is imported already
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    return type(checkpoint_engine) is TorchCheckpointEngine and checkpoint_engine.zipfile_serialization


@contextlib.contextmanager
def checkpoint_engine_of(engine: Any, checkpoint_engine: Any) -> Iterator[None]:
    """``engine.checkpoint_engine`` is ``checkpoint_engine`` inside the block, the engine's own again after."""
    own = engine.checkpoint_engine
    engine.checkpoint_engine = checkpoint_engine
    try:
        yield
    finally:
        engine.checkpoint_engine = own
