"""Saving: ``CheckpointHook`` and the save sequence that makes a tag complete only when whole."""

from __future__ import annotations

import errno
import functools
import logging
import os
import resource
import shutil
import time
from typing import Any, Callable, Dict, Optional

import torch

from engine import comm
from engine.checkpoint import layout
from engine.checkpoint.state import capture_rng, check_ranks_agree, new_sync_group, restore_rng
from engine.errors import EngineError
from engine.trainer.hooks import PeriodicHook

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
            raise EngineError(_write_failure(where, f"[Errno {exc.errno}] {exc.strerror}")) from exc
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
    this rank's state file → fsync → barrier → rank 0 writes the marker, then ``latest``,
    then rotates. A crash anywhere before the marker leaves a tag that resume skips.
    A named ``tag`` that is not ``iter_<n>`` (the best checkpoint) is complete the same
    way but becomes neither ``latest`` nor a candidate for rotation.
    """
    root = layout.checkpoint_root(trainer.cfg.OUTPUT_DIR)
    tag = tag or layout.tag_name(step)
    tag_dir = os.path.join(root, tag)
    check_ranks_agree(group, "checkpoint tag", tag)
    start = time.perf_counter()
    if comm.is_main_process() and os.path.isdir(tag_dir):
        layout.remove_tag(root, tag)  # leftovers of an interrupted save of the same step
    comm.synchronize()
    trainer_state = trainer.state_dict()
    for name, engine in trainer.model.engines.items():
        engine.save_checkpoint(tag_dir, tag=name, client_state={"trainer": trainer_state}, save_latest=False)
    _fault_pause()
    own = layout.rank_state_file(tag_dir, comm.get_rank())
    extra = getattr(trainer.model, "extra_state", None)  # per-rank model state beyond engines (EMA shards)
    torch.save({"trainer": trainer_state, "rng": capture_rng(), "rank": comm.get_rank(),
                "world_size": comm.get_world_size(), "model": extra() if extra else {}}, own)
    layout.fsync_tree(tag_dir)
    comm.synchronize()  # every rank's files are on disk
    _fault_pause()
    if comm.is_main_process():
        layout.write_marker(tag_dir, {
            "tag": tag, "iteration": step, "world_size": comm.get_world_size(),
            "engines": sorted(trainer.model.engines), "zero_stage": _zero_stage(trainer),
            "ema": getattr(trainer.model, "ema", None) is not None,
            "export": trainer.model.export_layout() if hasattr(trainer.model, "export_layout") else {},
            **(marker_extra or {}),
        })
        _fault_pause()
        if layout.tag_step(tag) is not None:
            layout.write_latest(root, tag)
            layout.rotate(root, trainer.cfg.SOLVER.MAX_KEEP)
    logger.info(f"saved checkpoint {tag_dir} ({time.perf_counter() - start:.1f}s)")
    return tag_dir


def _zero_stage(trainer: Any) -> int:
    return trainer.plan.zero_stage


class CheckpointHook(PeriodicHook):
    """Saves every ``solver.checkpoint_period`` steps and after the last; restores RNG on resume.

    It should be the last hook: a save then sees the RNG as the next step will, and a
    restore in ``before_train`` happens after the data iterator was created (creating it
    draws from torch's RNG) and after every other hook's ``before_train``.
    ``solver.stop_at_iter`` ends the process right after that step's save, as a kill would.
    """

    def __init__(self, period: int, stop_at_iter: int = 0) -> None:
        super().__init__(period)
        self.stop_at_iter = stop_at_iter
        self.pending_rng: Optional[Dict[str, Any]] = None
        self._group: Any = None
        self._saved_step = -1

    def before_train(self) -> None:
        self._group = new_sync_group()
        if self.pending_rng is not None:
            restore_rng(self.pending_rng)
            self.pending_rng = None

    def after_step(self) -> None:
        done = self.trainer.iter + 1
        stop = self.stop_at_iter > 0 and done == self.stop_at_iter
        if (self.is_due() or stop) and done != self._saved_step:
            save_checkpoint(self.trainer, done, self._group)
            self._saved_step = done
        if stop:
            _stop_now(done)


def _stop_now(step: int) -> None:
    """Leave like a preempted job: no after_train, no after_loop, exit code 0."""
    from engine.schedule.launch import shutdown_distributed

    logger.info(f"stopping after step {step} (solver.stop_at_iter); resume with --resume")
    shutdown_distributed(barrier=True)
    logging.shutdown()
    os._exit(0)
