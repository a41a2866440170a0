"""``Checkpointer``: the one object that owns a run's checkpoints.

It owns the checkpoint root, tag naming and rotation (``max_keep``), the gloo sync group
of the rank check (made once, collectively, by :meth:`Checkpointer.start`), the save in
flight when writes are asynchronous, the RNG a resume loaded (restored by an explicit
:meth:`Checkpointer.restore_rng` call), and the ``best`` tag. It is built from plain values
(no trainer, no config) and every save names what it saves: the model bundle and the
trainer state. ``trainer.checkpoint`` is this object; the hooks, the NaN stop and resume are
given it. The save sequence itself (rank check, DeepSpeed saves, fsync, marker) is
``engine.checkpoint.saver``; the on-disk layout is ``engine.checkpoint.layout``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, Mapping, Optional, Union

from engine import comm
from engine.checkpoint import layout
from engine.checkpoint.async_writer import BackgroundWriter
from engine.checkpoint.saver import PendingSave, finish_async_save, save_checkpoint, start_async_save
from engine.checkpoint.state import new_sync_group, restore_rng, sync_timeout
from engine.checkpoint.trainer_checkpoint import SeedCheckpointMembers
from engine.errors import EngineError

logger = logging.getLogger("engine")

#: the trainer state of a save: the dict, or a callable that gives it (called once per save)
TrainerState = Union[Mapping[str, Any], Callable[[], Mapping[str, Any]]]


class Checkpointer(SeedCheckpointMembers):
    """Saves, rotates and hands back the checkpoints of one run (every rank holds one).

    Args:
        output_dir: the run's ``output_dir``; tags go to ``<output_dir>/checkpoints``.
        max_keep: newest complete ``iter_`` tags kept (>= 1; ``best`` is never rotated).
        zero_stage: the run plan's ZeRO stage, written to each marker (export and resize read it).
        sync_timeout_s: seconds every rank waits for the others at a save (None:
            ``ENGINE_CKPT_SYNC_TIMEOUT``, default 300).
        writer: background writer for asynchronous saves; None: every save is synchronous.
        seed: the run's seed: a resume on another world size reseeds RNG from it.
        check_period: ``solver.checkpoint_period`` (the seed's ``check_period``).
        max_iter: length of the seed's loop (steps, or epochs in epoch mode).

    Raises:
        EngineError: ``max_keep`` < 1 (the newest complete tag must survive rotation).
    """

    def __init__(self, output_dir: str, max_keep: int, *, zero_stage: int = 0, sync_timeout_s: Optional[float] = None,
                 writer: Optional[BackgroundWriter] = None, seed: int = 0, check_period: int = 0,
                 max_iter: int = 0) -> None:
        if int(max_keep) < 1:
            raise EngineError(f"Checkpointer: max_keep (solver.max_keep) must be >= 1, the newest complete "
                              f"checkpoint is always kept; got {max_keep!r}")
        self.output_dir = output_dir
        self.root = layout.checkpoint_root(output_dir)
        self.max_keep = int(max_keep)
        self.zero_stage = int(zero_stage)
        self.sync_timeout_s = float(sync_timeout_s) if sync_timeout_s is not None else sync_timeout()
        self.writer = writer
        self.seed = int(seed)
        self.check_period = int(check_period)
        self.max_iter = int(max_iter)
        self.group: Any = None  # the gloo group of the rank check; None until start() (or on one process)
        self.pending_save: Optional[PendingSave] = None
        self.saved_step = -1  # the last iter_ tag this run wrote (or started writing)
        self._pending_model: Any = None
        self._started = False
        self._rng: Optional[Dict[str, Any]] = None
        self._best: Optional[Dict[str, Any]] = None

    @property
    def save_dir(self) -> str:
        """The seed's name of :attr:`root`: the folder the tags are written to."""
        return self.root

    # ---- lifetime ----------------------------------------------------------------------------
    def start(self) -> None:
        """Make the sync group: a collective, so every rank calls it at the same point (before training).

        Idempotent: the hooks that save each call it in ``before_train``; the group is made once.
        """
        if not self._started:
            self.group = new_sync_group(self.sync_timeout_s)
            self._started = True

    # ---- saving ------------------------------------------------------------------------------
    def save_tag(self, model: Any, state: TrainerState, step: int, *, blocking: bool = False) -> str:
        """Save tag ``iter_<step>`` of ``model`` now, on every rank; returns its folder.

        With a writer the save is started in the background (complete once :meth:`poll` or
        :meth:`wait` saw every rank finish) unless ``blocking``; at most one save is in flight,
        so an earlier one is completed first. Rotation runs when the tag becomes complete.

        Args:
            model: the model bundle (``engines``; optional ``extra_state``, ``export_layout``, ``ema``).
            state: the trainer state dict, or a callable giving it.
            step: optimizer steps done (the tag's number).
            blocking: write synchronously even with a writer (a save right before the run stops).

        Returns:
            The tag folder (complete on return unless the save went to the background).
        """
        self.wait()
        trainer_state = dict(state() if callable(state) else state)
        if self.writer is None or blocking:
            tag_dir = save_checkpoint(self, model, trainer_state, int(step))
        else:
            self.pending_save = start_async_save(self, model, trainer_state, int(step), self.writer)
            self._pending_model, tag_dir = model, self.pending_save.tag_dir
        self.saved_step = int(step)
        return tag_dir

    def save_once(self, model: Any, state: TrainerState, step: int) -> Optional[str]:
        """:meth:`save_tag` unless this run already saved ``step`` (a hook and the seed's ``save``
        may both ask for the same step); returns the folder, or None when it was saved already."""
        if int(step) == self.saved_step:
            return None
        return self.save_tag(model, state, step)

    def poll(self) -> None:
        """Complete the save in flight if every rank finished writing (a collective; never blocks on the disk)."""
        if self.pending_save is not None and finish_async_save(self, self._pending_model, self.pending_save,
                                                               self.writer, block=False):
            self._clear_pending()

    def wait(self) -> None:
        """Block until the save in flight (if any) is complete on every rank (a collective)."""
        if self.pending_save is not None:
            finish_async_save(self, self._pending_model, self.pending_save, self.writer, block=True)
            self._clear_pending()

    def settle_after_failure(self) -> None:
        """A step raised: let this rank's background write (if any) finish before the process ends.

        In a one-process run the tag is then completed as usual (its only writer is done).
        With several ranks it stays incomplete: completing it is a collective, and the other
        ranks have failed too or are still training, so resume starts from the previous
        complete tag. Errors here are logged, not raised: the training's own error is the
        one to see.
        """
        if self.pending_save is None:
            return
        tag_dir = self.pending_save.tag_dir
        try:
            if comm.get_world_size() == 1:
                self.wait()
                logger.info(f"the run failed; the asynchronous save {tag_dir} in flight was completed first")
                return
            self.writer.wait()
            logger.warning(f"the run failed during the asynchronous save {tag_dir}: this rank's files are written, "
                           "but the tag is not marked complete (every rank must confirm); --resume starts from the "
                           "previous complete checkpoint")
        except Exception:  # noqa: BLE001 - reported, not raised: the step's error is what the user must see
            logger.exception(f"the asynchronous save {tag_dir} in flight failed after the run failed")
        finally:
            self._clear_pending()

    def _clear_pending(self) -> None:
        self.pending_save, self._pending_model = None, None

    def newest_complete_tag(self) -> Optional[str]:
        """The newest complete ``iter_`` tag on this rank's disk now (what ``--resume`` would start from), or None."""
        tags = layout.complete_tags(self.root)
        return tags[0] if tags else None

    # ---- the best tag ------------------------------------------------------------------------
    def save_best(self, model: Any, state: TrainerState, step: int, record: Dict[str, Any]) -> str:
        """Save tag ``best`` (``record``: metric, mode, value; kept in its marker) on every rank.

        Written whole as ``best.new`` through the normal sequence, then renamed over ``best``;
        never rotated. Synchronous, alongside an ``iter_`` save in flight: the two write different
        folders and the ranks meet their collectives in the same order. Returns the ``best`` folder.
        """
        trainer_state = dict(state() if callable(state) else state)
        save_checkpoint(self, model, trainer_state, int(step), tag=layout.BEST_STAGING, marker_extra={"best": record})
        if comm.is_main_process():
            layout.promote_best(self.root)
        comm.synchronize()  # no rank starts the next save of best.new before the rename
        self._best = dict(record)
        return os.path.join(self.root, layout.BEST)

    def previous_best(self, metric: str, mode: str) -> Optional[float]:
        """The best value of ``metric`` (``mode``) kept so far: read once on resume, then as saved; else None."""
        record = self._best or {}
        if record.get("metric") != metric or record.get("mode") != mode:
            return None
        return float(record["value"])

    # ---- resume ------------------------------------------------------------------------------
    def resumed(self, rng: Dict[str, Any]) -> None:
        """What a resume hands over: the loaded RNG (kept until :meth:`restore_rng`) and the best record.

        The RNG waits because ``train()`` creates the data iterator first, which draws from
        torch's RNG; the ``best`` tag's marker is read here, once.
        """
        self._rng = rng
        self._best = layout.best_record(self.root)

    @property
    def rng_pending(self) -> bool:
        """Whether a resume handed over RNG that :meth:`restore_rng` has not put back yet."""
        return self._rng is not None

    def restore_rng(self) -> bool:
        """Put back the RNG a resume loaded (once); returns whether there was one.

        Call it after the data iterator exists and after every other ``before_train``
        (``CheckpointHook.before_train`` does, as the last hook).
        """
        if self._rng is None:
            return False
        restore_rng(self._rng)
        self._rng = None
        return True
