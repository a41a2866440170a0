"""The save sequence that makes a tag complete only when whole: the machinery of ``Checkpointer``.

Every function takes what it writes explicitly: the save site (root folder, ``max_keep``,
ZeRO stage, sync group: a :class:`SaveSite`, in practice the ``Checkpointer``), the model
bundle (``engines``, optional ``extra_state`` / ``export_layout`` / ``ema``) and the trainer
state dict. Nothing here knows a trainer or a config.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import resource
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Protocol

import torch

from engine import comm
from engine.checkpoint import layout
from engine.checkpoint.async_writer import BackgroundWriter, capturing_checkpoint_engine, snapshot
from engine.checkpoint.state import capture_rng, check_ranks_agree
from engine.checkpoint.writer import checkpoint_engine_of, replaceable, streaming_checkpoint_engine, write_file
from engine.errors import EngineError

logger = logging.getLogger("engine")


#: how torch's zip writer says a write failed (no errno in the message)
_TORCH_WRITE_FAILED = ("file write failed", "failed writing file", "PytorchStreamWriter", "iostream error",
                       "inline_container.cc")

#: Harness only (benchmarks/fault_injection.py): seconds to sleep between the phases of a save
#: so that a random SIGKILL lands inside one. Unset (0) in real runs.
FAULT_SAVE_DELAY_ENV = "ENGINE_FAULT_SAVE_DELAY"


class SaveSite(Protocol):
    """Where and how a save writes: what the sequence needs of its owner (the ``Checkpointer``)."""

    root: str  # ``<output_dir>/checkpoints``
    max_keep: int  # newest complete ``iter_`` tags kept by rotation
    zero_stage: int  # written to the marker (export and resize read it)
    group: Any  # the gloo sync group of the rank check (None: one process)


def _fault_pause() -> None:
    delay = float(os.environ.get(FAULT_SAVE_DELAY_ENV) or 0)
    if delay > 0:
        time.sleep(delay)


def _save_errors_named(save: Callable[..., str]) -> Callable[..., str]:
    """A failed write (disk full, file-size limit, read-only or misplaced path) becomes an
    ``EngineError`` naming the path and the OS reason instead of a deep torch traceback.

    Nothing else is needed for safety: the marker was not written, so resume skips the
    half tag and the previous complete tag stays the newest one.
    """

    @functools.wraps(save)
    def wrapper(site: SaveSite, model: Any, trainer_state: Dict[str, Any], step: int, *args: Any, **kwargs: Any) -> Any:
        try:
            return save(site, model, trainer_state, step, *args, **kwargs)
        except OSError as exc:
            where = exc.filename or site.root
            raise EngineError(_write_failure(where, _os_reason(exc))) from exc
        except RuntimeError as exc:  # torch's zip writer reports failed writes without errno
            said = _torch_write_error(exc)
            if said is None:
                raise
            where = os.path.join(site.root, kwargs.get("tag") or layout.tag_name(step))
            reason = f"torch: {said}; {_likely_os_reason(where)}"
            raise EngineError(_write_failure(where, reason)) from exc

    return wrapper


def _torch_write_error(exc: BaseException) -> Optional[str]:
    """The deepest message in the chain that says torch failed to write (its writer raises a second
    error while closing the broken file), or None when the chain is about something else."""
    found = None
    while exc is not None:
        text = str(exc).strip()
        if isinstance(exc, RuntimeError) and any(sign in text for sign in _TORCH_WRITE_FAILED):
            found = text.splitlines()[-1]
        exc = exc.__context__
    return found


def _os_reason(exc: OSError) -> str:
    """``[Errno N] reason``, with the limit that was hit when it is the file-size limit."""
    reason = f"[Errno {exc.errno}] {exc.strerror}"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if exc.errno == errno.EFBIG and limit != resource.RLIM_INFINITY:
        reason += f": file-size limit {limit} bytes (ulimit -f)"
    return reason


def _likely_os_reason(path: str) -> str:
    """torch hides errno: name the likely one from what can be checked (free space, ``ulimit -f``)."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        return f"likely [Errno {errno.EFBIG}] {os.strerror(errno.EFBIG)}: file-size limit {limit} bytes (ulimit -f)"
    try:
        if shutil.disk_usage(os.path.dirname(path) or ".").free < 2**20:
            return f"likely [Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}"
    except OSError:
        pass
    return "errno unknown (disk full, quota or I/O error)"


def _write_failure(path: str, reason: str) -> str:
    try:
        free = f"{shutil.disk_usage(os.path.dirname(path) or '.').free / 2**20:.0f} MiB free there"
    except OSError:
        free = "free space unknown"
    return (f"checkpoint: rank {comm.get_rank()} could not write {path}: {reason} ({free}); the save was abandoned, "
            "the previous complete checkpoint is unchanged and --resume will skip this one. "
            "Free disk space or fix output_dir, then resume")


@_save_errors_named
def save_checkpoint(site: SaveSite, model: Any, trainer_state: Dict[str, Any], step: int, *,
                    tag: Optional[str] = None, marker_extra: Optional[Dict[str, Any]] = None) -> str:
    """Save tag ``iter_<step>`` (or ``tag``) of ``model`` on every rank; returns the tag folder.

    Order: rank check (fails fast if a rank is missing) → each engine's DeepSpeed save →
    this rank's state file (every file written with write-behind and fsynced by
    ``engine.checkpoint.writer``) → fsync of the folders → barrier → rank 0 writes the marker, then ``latest``,
    then rotates. A crash anywhere before the marker leaves a tag that resume skips.
    A named ``tag`` that is not ``iter_<n>`` (the best checkpoint) is complete the same
    way but becomes neither ``latest`` nor a candidate for rotation.
    """
    pending = _begin(site, step, trainer_state, tag, marker_extra)
    for name, engine in model.engines.items():
        own = engine.checkpoint_engine
        with checkpoint_engine_of(engine, streaming_checkpoint_engine() if replaceable(own) else own):
            engine.save_checkpoint(pending.tag_dir, tag=name, client_state={"trainer": pending.trainer_state},
                                   save_latest=False)
    _fault_pause()
    write_file(layout.rank_state_file(pending.tag_dir, comm.get_rank()), _rank_state(model, pending.trainer_state))
    layout.fsync_tree(pending.tag_dir)  # the folders, and what DeepSpeed wrote itself (its recovery scripts)
    comm.synchronize()  # every rank's files are on disk
    _fault_pause()
    _commit(site, model, pending)
    logger.info(f"saved checkpoint {pending.tag_dir} ({time.perf_counter() - pending.started:.1f}s)")
    return pending.tag_dir


@dataclass
class PendingSave:
    """A save whose files are (being) written; complete once ``_commit`` wrote its marker."""

    tag: str
    tag_dir: str
    step: int
    trainer_state: Dict[str, Any]
    marker_extra: Dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    blocked_s: float = 0.0  # what the training step paid (async: the host copy)


def _begin(site: SaveSite, step: int, trainer_state: Dict[str, Any], tag: Optional[str],
           marker_extra: Optional[Dict[str, Any]]) -> PendingSave:
    """The start every save shares: ranks agree on the tag, leftovers of the same tag go."""
    tag = tag or layout.tag_name(step)
    tag_dir = os.path.join(site.root, tag)
    check_ranks_agree(site.group, "checkpoint tag", tag)
    pending = PendingSave(tag, tag_dir, step, trainer_state, dict(marker_extra or {}))
    if comm.is_main_process() and os.path.isdir(tag_dir):
        layout.remove_tag(site.root, tag)  # leftovers of an interrupted save of the same step
    comm.synchronize()
    return pending


def _rank_state(model: Any, trainer_state: Dict[str, Any]) -> Dict[str, Any]:
    """This rank's own file: trainer position, RNG streams, per-rank model state (EMA shards)."""
    extra = getattr(model, "extra_state", None)
    return {"trainer": trainer_state, "rng": capture_rng(), "rank": comm.get_rank(),
            "world_size": comm.get_world_size(), "model": extra() if extra else {}}


def _commit(site: SaveSite, model: Any, pending: PendingSave) -> None:
    """Rank 0, once every rank's files are on disk: marker, then ``latest``, then rotation."""
    if not comm.is_main_process():
        return
    layout.write_marker(pending.tag_dir, {
        "tag": pending.tag, "iteration": pending.step, "world_size": comm.get_world_size(),
        "engines": sorted(model.engines), "zero_stage": site.zero_stage,
        "ema": getattr(model, "ema", None) is not None,
        "export": model.export_layout() if hasattr(model, "export_layout") else {},
        **pending.marker_extra,
    })
    _fault_pause()
    if layout.tag_step(pending.tag) is not None:
        layout.write_latest(site.root, pending.tag)
        layout.rotate(site.root, site.max_keep)


@_save_errors_named
def start_async_save(site: SaveSite, model: Any, trainer_state: Dict[str, Any], step: int,
                     writer: BackgroundWriter) -> PendingSave:
    """Copy every rank's state to host memory and hand the files to ``writer``; returns at once.

    DeepSpeed's collectives of the save (its barriers, the tag check) run here, on every
    rank, with each engine's checkpoint engine swapped for a capturing one (``async_writer``).
    The tag becomes complete in :func:`finish_async_save`, after every rank's write finished.

    Raises:
        RuntimeError: when ``writer`` still has a save in flight (finish that one first).
    """
    if writer.busy:
        raise RuntimeError("start_async_save: finish the save in flight first (finish_async_save)")
    pending = _begin(site, step, trainer_state, None, None)
    capture = capturing_checkpoint_engine(writer.buffers)
    for name, engine in model.engines.items():
        with checkpoint_engine_of(engine, capture):
            engine.save_checkpoint(pending.tag_dir, tag=name, client_state={"trainer": pending.trainer_state},
                                   save_latest=False)
    capture.files.append((layout.rank_state_file(pending.tag_dir, comm.get_rank()),
                          snapshot(_rank_state(model, pending.trainer_state), buffers=writer.buffers)))
    writer.submit(capture.files, pending.tag_dir)
    pending.blocked_s = time.perf_counter() - pending.started
    return pending


def finish_async_save(site: SaveSite, model: Any, pending: PendingSave, writer: BackgroundWriter,
                      block: bool) -> bool:
    """Complete ``pending`` if every rank's background write is done (or wait for it when ``block``).

    A collective on every rank: the ranks all-reduce "my write is done" and "my write
    failed"; only when all are done and none failed does rank 0 write the marker. A failed
    write on any rank ends the run on every rank with the ``EngineError`` of a failed save
    (the tag stays incomplete, the previous complete tag is untouched).

    Returns:
        True when the tag is now complete, False when some rank is still writing.
    """
    error: Optional[EngineError] = None
    if block or writer.finished():
        try:
            _wait_named(site, pending, writer)
        except EngineError as exc:  # told to every rank below, then raised here with its own reason
            error = exc
    flags = torch.tensor([1 if writer.busy else 0, 1 if error else 0], dtype=torch.int64)
    if comm.is_dist() and comm.get_world_size() > 1:
        import torch.distributed as dist

        dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=site.group)
    if int(flags[1]):
        raise error or EngineError(f"checkpoint: another rank could not write {pending.tag_dir} in the background "
                                   "(its log says why); the save was abandoned, the previous complete checkpoint "
                                   "is unchanged")
    if int(flags[0]):
        return False
    _fault_pause()
    _commit(site, model, pending)
    logger.info(f"saved checkpoint {pending.tag_dir} asynchronously: training blocked {pending.blocked_s:.2f}s, "
                f"background write {writer.last_seconds:.1f}s ({writer.last_bytes / 2**20:.0f} MiB on this rank), "
                f"complete after {time.perf_counter() - pending.started:.1f}s")
    return True


def _wait_named(site: SaveSite, pending: PendingSave, writer: BackgroundWriter) -> None:
    """``writer.wait()`` with a failed write turned into the message of a failed synchronous save."""

    @_save_errors_named
    def wait(site: SaveSite, model: Any, trainer_state: Dict[str, Any], step: int, *, tag: Optional[str] = None) -> str:
        writer.wait()
        return pending.tag_dir

    wait(site, None, pending.trainer_state, pending.step, tag=pending.tag)
