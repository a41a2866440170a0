"""``CheckpointHook``: saves on the period, at the end, when asked (signals, trigger files), and restores RNG.

Why it must run last, and who checks it: a save must see the RNG as the next step will (a
hook after it that draws random numbers would make a resumed run differ), and the RNG a
resume loaded is put back in its ``before_train``, after every other hook's ``before_train``
and after the data iterator was created (creating it draws from torch's RNG).
:func:`check_runs_last` is called by the trainer on its hook list and warns, naming the
hooks, when a ``build_hooks`` puts any after it.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional, Sequence

from engine.checkpoint.checkpointer import Checkpointer
from engine.checkpoint.preempt import EXIT_REQUEUE, NO_REQUEST, StopRequests
from engine.events.hooks import HookBase, PeriodicHook
from engine.launch import shutdown_distributed

logger = logging.getLogger("engine")


class CheckpointHook(PeriodicHook):
    """Saves every ``period`` steps, after the last, and when asked; restores RNG on resume.

    It must be the last hook (module doc). ``stop_at_iter`` ends the process right after
    that step's save, as a kill would.

    Args:
        checkpointer: the run's ``Checkpointer`` (``trainer.checkpoint``): where and how tags are saved.
        period: ``solver.checkpoint_period``.
        stop_at_iter: ``solver.stop_at_iter`` (0: off).
        requests: signals and trigger files asking for a save (and a stop); None: never asked.
    """

    def __init__(self, checkpointer: Checkpointer, period: int, stop_at_iter: int = 0,
                 requests: Optional[StopRequests] = None) -> None:
        super().__init__(period)
        self.checkpointer = checkpointer
        self.stop_at_iter = stop_at_iter
        self.requests = requests

    def before_train(self) -> None:
        self.checkpointer.start()
        if self.requests is not None:
            self.requests.start()
        self.checkpointer.restore_rng()

    def after_step(self) -> None:
        done = self.trainer.iter + 1
        request = self.requests.poll() if self.requests is not None else NO_REQUEST
        self.checkpointer.poll()
        drill = self.stop_at_iter > 0 and done == self.stop_at_iter
        if self.is_due() or drill or request.save:
            if request.save and done != self.checkpointer.saved_step:
                logger.info(f"step {done}: saving because of {request.reason}")
            self.checkpointer.save_once(self.trainer.model, self.trainer.state_dict, done)
        if request.save:
            self.requests.done(request)
        if drill or request.stop:
            self.checkpointer.wait()
            if self.requests is not None:
                late = self.requests.late_signals()
                if late:
                    logger.info(f"{late} more signal(s) came during the save; recorded and ignored")
            if request.stop:
                _stop_now(done, f"{request.reason}; exit code {EXIT_REQUEUE} (requeue)", EXIT_REQUEUE)
            _stop_now(done, "solver.stop_at_iter", 0)

    def after_train(self) -> None:
        self.checkpointer.wait()
        if self.requests is not None:
            self.requests.stop()

    def after_failure(self) -> None:
        self.checkpointer.settle_after_failure()  # a save in flight is not left half-written
        if self.requests is not None:
            self.requests.stop()


def _stop_now(step: int, why: str, code: int) -> None:
    """Leave like a preempted job: no after_train, no after_loop; ``code`` tells the scheduler what to do.

    The signal handlers stay installed to the end: a signal that arrives now is recorded
    and ignored instead of killing a rank in the middle of the final barrier.
    """
    logger.info(f"stopping after step {step} ({why}); resume with --resume auto")
    shutdown_distributed(barrier=True)
    logging.shutdown()
    os._exit(code)


def check_runs_last(hooks: Sequence[HookBase]) -> None:
    """Warn, naming them, when hooks run after the ``CheckpointHook`` (why it must be last: module doc).

    A warning, not an error: a hook that draws no random numbers is harmless there, and
    seed-era ``build_hooks`` overrides keep working.
    """
    positions = [i for i, hook in enumerate(hooks) if isinstance(hook, CheckpointHook)]
    if not positions:
        return
    after = [type(hook).__name__ for hook in hooks[positions[-1] + 1:]]
    if after:
        logger.warning(f"hooks {', '.join(after)} run after CheckpointHook: a save then may not see the RNG the next "
                       "step uses, and the RNG restored on resume may be drawn from before training starts, so a "
                       "resumed run can differ from an uninterrupted one. Put them before CheckpointHook in "
                       "build_hooks (trainer.hooks entries already are).")


def find_hook(hooks: Sequence[Any]) -> Optional[CheckpointHook]:
    """The ``CheckpointHook`` among ``hooks`` (None if a trainer's ``build_hooks`` left it out)."""
    return next((h for h in hooks if isinstance(h, CheckpointHook)), None)
