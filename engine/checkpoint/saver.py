"""Saving: ``CheckpointHook`` and the save sequence that makes a tag complete only when whole."""

from __future__ import annotations

import errno
import functools
import logging
import os
import resource
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import torch

from engine import comm
from engine.checkpoint import layout
from engine.checkpoint.async_writer import BackgroundWriter, CapturingCheckpointEngine, snapshot
from engine.checkpoint.preempt import EXIT_REQUEUE, NO_REQUEST, StopRequests
from engine.checkpoint.state import capture_rng, check_ranks_agree, new_sync_group, restore_rng
from engine.checkpoint.writer import StreamingCheckpointEngine, checkpoint_engine_of, replaceable, write_file
from engine.errors import EngineError
from engine.events.hooks import PeriodicHook
from engine.launch import shutdown_distributed

logger = logging.getLogger("engine")


#: how torch's zip writer says a write failed (no errno in the message)
_TORCH_WRITE_FAILED = ("file write failed", "failed writing file", "PytorchStreamWriter", "iostream error",
                       "inline_container.cc")

#: Harness only (benchmarks/fault_injection.py): seconds to sleep between the phases of a save
#: so that a random SIGKILL lands inside one. Unset (0) in real runs.
FAULT_SAVE_DELAY_ENV = "ENGINE_FAULT_SAVE_DELAY"


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
    def wrapper(trainer: Any, step: int, *args: Any, **kwargs: Any) -> str:
        try:
            return save(trainer, step, *args, **kwargs)
        except OSError as exc:
            where = exc.filename or layout.checkpoint_root(trainer.cfg.OUTPUT_DIR)
            raise EngineError(_write_failure(where, _os_reason(exc))) from exc
        except RuntimeError as exc:  # torch's zip writer reports failed writes without errno
            said = _torch_write_error(exc)
            if said is None:
                raise
            where = os.path.join(layout.checkpoint_root(trainer.cfg.OUTPUT_DIR), kwargs.get("tag") or layout.tag_name(step))
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
def save_checkpoint(trainer: Any, step: int, group: Any = None, *, tag: Optional[str] = None,
                    marker_extra: Optional[Dict[str, Any]] = None) -> str:
    """Save tag ``iter_<step>`` on every rank; returns the tag folder.

    Order: rank check (fails fast if a rank is missing) → each engine's DeepSpeed save →
    this rank's state file (every file written with write-behind and fsynced by
    ``engine.checkpoint.writer``) → fsync of the folders → barrier → rank 0 writes the marker, then ``latest``,
    then rotates. A crash anywhere before the marker leaves a tag that resume skips.
    A named ``tag`` that is not ``iter_<n>`` (the best checkpoint) is complete the same
    way but becomes neither ``latest`` nor a candidate for rotation.
    """
    pending = _begin(trainer, step, group, tag, marker_extra)
    for name, engine in trainer.model.engines.items():
        own = engine.checkpoint_engine
        with checkpoint_engine_of(engine, StreamingCheckpointEngine() if replaceable(own) else own):
            engine.save_checkpoint(pending.tag_dir, tag=name, client_state={"trainer": pending.trainer_state},
                                   save_latest=False)
    _fault_pause()
    write_file(layout.rank_state_file(pending.tag_dir, comm.get_rank()), _rank_state(trainer, pending.trainer_state))
    layout.fsync_tree(pending.tag_dir)  # the folders, and what DeepSpeed wrote itself (its recovery scripts)
    comm.synchronize()  # every rank's files are on disk
    _fault_pause()
    _commit(trainer, pending)
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


def _begin(trainer: Any, step: int, group: Any, tag: Optional[str],
           marker_extra: Optional[Dict[str, Any]]) -> PendingSave:
    """The start every save shares: ranks agree on the tag, leftovers of the same tag go."""
    root = layout.checkpoint_root(trainer.cfg.OUTPUT_DIR)
    tag = tag or layout.tag_name(step)
    tag_dir = os.path.join(root, tag)
    check_ranks_agree(group, "checkpoint tag", tag)
    pending = PendingSave(tag, tag_dir, step, trainer.state_dict(), dict(marker_extra or {}))
    if comm.is_main_process() and os.path.isdir(tag_dir):
        layout.remove_tag(root, tag)  # leftovers of an interrupted save of the same step
    comm.synchronize()
    return pending


def _rank_state(trainer: Any, trainer_state: Dict[str, Any]) -> Dict[str, Any]:
    """This rank's own file: trainer position, RNG streams, per-rank model state (EMA shards)."""
    extra = getattr(trainer.model, "extra_state", None)
    return {"trainer": trainer_state, "rng": capture_rng(), "rank": comm.get_rank(),
            "world_size": comm.get_world_size(), "model": extra() if extra else {}}


def _commit(trainer: Any, pending: PendingSave) -> None:
    """Rank 0, once every rank's files are on disk: marker, then ``latest``, then rotation."""
    if not comm.is_main_process():
        return
    root = layout.checkpoint_root(trainer.cfg.OUTPUT_DIR)
    layout.write_marker(pending.tag_dir, {
        "tag": pending.tag, "iteration": pending.step, "world_size": comm.get_world_size(),
        "engines": sorted(trainer.model.engines), "zero_stage": _zero_stage(trainer),
        "ema": getattr(trainer.model, "ema", None) is not None,
        "export": trainer.model.export_layout() if hasattr(trainer.model, "export_layout") else {},
        **pending.marker_extra,
    })
    _fault_pause()
    if layout.tag_step(pending.tag) is not None:
        layout.write_latest(root, pending.tag)
        layout.rotate(root, trainer.cfg.SOLVER.MAX_KEEP)


@_save_errors_named
def start_async_save(trainer: Any, step: int, group: Any, writer: BackgroundWriter) -> PendingSave:
    """Copy every rank's state to host memory and hand the files to ``writer``; returns at once.

    DeepSpeed's collectives of the save (its barriers, the tag check) run here, on every
    rank, with each engine's checkpoint engine swapped for a :class:`CapturingCheckpointEngine`.
    The tag becomes complete in :func:`finish_async_save`, after every rank's write finished.

    Raises:
        RuntimeError: when ``writer`` still has a save in flight (finish that one first).
    """
    if writer.busy:
        raise RuntimeError("start_async_save: finish the save in flight first (finish_async_save)")
    pending = _begin(trainer, step, group, None, None)
    capture = CapturingCheckpointEngine(writer.buffers)
    for name, engine in trainer.model.engines.items():
        with checkpoint_engine_of(engine, capture):
            engine.save_checkpoint(pending.tag_dir, tag=name, client_state={"trainer": pending.trainer_state},
                                   save_latest=False)
    capture.files.append((layout.rank_state_file(pending.tag_dir, comm.get_rank()),
                          snapshot(_rank_state(trainer, pending.trainer_state), buffers=writer.buffers)))
    writer.submit(capture.files, pending.tag_dir)
    pending.blocked_s = time.perf_counter() - pending.started
    return pending


def finish_async_save(trainer: Any, pending: PendingSave, group: Any, writer: BackgroundWriter,
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
            _wait_named(trainer, pending, writer)
        except EngineError as exc:  # told to every rank below, then raised here with its own reason
            error = exc
    flags = torch.tensor([1 if writer.busy else 0, 1 if error else 0], dtype=torch.int64)
    if comm.is_dist() and comm.get_world_size() > 1:
        import torch.distributed as dist

        dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=group)
    if int(flags[1]):
        raise error or EngineError(f"checkpoint: another rank could not write {pending.tag_dir} in the background "
                                   "(its log says why); the save was abandoned, the previous complete checkpoint "
                                   "is unchanged")
    if int(flags[0]):
        return False
    _fault_pause()
    _commit(trainer, pending)
    logger.info(f"saved checkpoint {pending.tag_dir} asynchronously: training blocked {pending.blocked_s:.2f}s, "
                f"background write {writer.last_seconds:.1f}s ({writer.last_bytes / 2**20:.0f} MiB on this rank), "
                f"complete after {time.perf_counter() - pending.started:.1f}s")
    return True


def _wait_named(trainer: Any, pending: PendingSave, writer: BackgroundWriter) -> None:
    """``writer.wait()`` with a failed write turned into the message of a failed synchronous save."""

    @_save_errors_named
    def wait(trainer: Any, step: int, *, tag: Optional[str] = None) -> str:
        writer.wait()
        return pending.tag_dir

    wait(trainer, pending.step, tag=pending.tag)


def _zero_stage(trainer: Any) -> int:
    return trainer.plan.zero_stage


class CheckpointHook(PeriodicHook):
    """Saves every ``solver.checkpoint_period`` steps, after the last, and when asked; restores RNG on resume.

    It should be the last hook: a save then sees the RNG as the next step will, and a
    restore in ``before_train`` happens after the data iterator was created (creating it
    draws from torch's RNG) and after every other hook's ``before_train``.
    ``solver.stop_at_iter`` ends the process right after that step's save, as a kill would.

    Args:
        period: ``solver.checkpoint_period``.
        stop_at_iter: ``solver.stop_at_iter`` (0: off).
        requests: signals and trigger files asking for a save (and a stop); None: never asked.
        writer: background writer for ``solver.checkpoint_async``; None: every save is synchronous.
    """

    def __init__(self, period: int, stop_at_iter: int = 0, requests: Optional[StopRequests] = None,
                 writer: Optional[BackgroundWriter] = None) -> None:
        super().__init__(period)
        self.stop_at_iter = stop_at_iter
        self.requests = requests
        self.writer = writer
        self.pending_rng: Optional[Dict[str, Any]] = None
        self.pending_save: Optional[PendingSave] = None
        self._group: Any = None
        self._saved_step = -1

    def before_train(self) -> None:
        self._group = new_sync_group()
        if self.requests is not None:
            self.requests.start()
        if self.pending_rng is not None:
            restore_rng(self.pending_rng)
            self.pending_rng = None

    def after_step(self) -> None:
        done = self.trainer.iter + 1
        request = self.requests.poll() if self.requests is not None else NO_REQUEST
        if self.pending_save is not None:
            self._finish(block=False)
        drill = self.stop_at_iter > 0 and done == self.stop_at_iter
        if (self.is_due() or drill or request.save) and done != self._saved_step:
            if request.save:
                logger.info(f"step {done}: saving because of {request.reason}")
            self.save(done)
        if request.save:
            self.requests.done(request)
        if drill or request.stop:
            self.wait()
            if self.requests is not None:
                late = self.requests.late_signals()
                if late:
                    logger.info(f"{late} more signal(s) came during the save; recorded and ignored")
            if request.stop:
                _stop_now(done, f"{request.reason}; exit code {EXIT_REQUEUE} (requeue)", EXIT_REQUEUE)
            _stop_now(done, "solver.stop_at_iter", 0)

    def after_train(self) -> None:
        self.wait()
        if self.requests is not None:
            self.requests.stop()

    def save(self, step: int) -> None:
        """Save tag ``iter_<step>`` now: synchronously, or started in the background with a writer."""
        self.wait()  # at most one save in flight
        if self.writer is None:
            save_checkpoint(self.trainer, step, self._group)
        else:
            self.pending_save = start_async_save(self.trainer, step, self._group, self.writer)
        self._saved_step = step

    def save_once(self, done: int) -> None:
        """Save tag ``iter_<done>`` unless this run already saved it (the hook and
        ``trainer.checkpoint.save`` may both ask for the same step)."""
        if done != self._saved_step:
            self.save(done)

    def wait(self) -> None:
        """Block until the save in flight (if any) is complete on every rank (a collective)."""
        if self.pending_save is not None:
            finish_async_save(self.trainer, self.pending_save, self._group, self.writer, block=True)
            self.pending_save = None

    def _finish(self, block: bool) -> None:
        if finish_async_save(self.trainer, self.pending_save, self._group, self.writer, block=block):
            self.pending_save = None


def _stop_now(step: int, why: str, code: int) -> None:
    """Leave like a preempted job: no after_train, no after_loop; ``code`` tells the scheduler what to do.

    The signal handlers stay installed to the end: a signal that arrives now is recorded
    and ignored instead of killing a rank in the middle of the final barrier.
    """
    logger.info(f"stopping after step {step} ({why}); resume with --resume auto")
    shutdown_distributed(barrier=True)
    logging.shutdown()
    os._exit(code)


def find_checkpoint_hook(hooks: Any) -> Optional[CheckpointHook]:
    """The ``CheckpointHook`` among ``hooks`` (None if a trainer's ``build_hooks`` left it out)."""
    return next((h for h in hooks if isinstance(h, CheckpointHook)), None)
