"""``trainer.checkpoint``: the seed's checkpoint members, on top of engine's save sequence.

Seed trainers read ``self.checkpoint.check_period`` / ``max_keep`` / ``save_dir`` and call
``self.checkpoint.save(self.model, epoch)`` from their own loop code. This object answers
those with engine's values and saves through ``CheckpointHook``, so a save made here is the
same complete tag (every engine, trainer state, RNG, EMA, marker) the hook writes, and a
step is never written twice when both ask for it.
"""

from __future__ import annotations

import weakref
from typing import Any

from engine.checkpoint import layout
from engine.errors import EngineError


class TrainerCheckpoint:
    """The seed's ``CheckPointerManager`` surface of one trainer.

    Attributes:
        check_period: ``solver.checkpoint_period`` (0: only at the end).
        max_keep: ``solver.max_keep``, newest complete tags kept.
        save_dir: the folder the tags are written to (``<output_dir>/checkpoints``).
        max_iter: length of the seed's loop: optimizer steps, or epochs in epoch mode.
    """

    def __init__(self, trainer: Any) -> None:
        self._trainer = weakref.proxy(trainer)  # the trainer owns this object: no reference cycle
        solver = trainer.cfg.SOLVER
        self.check_period = int(solver.CHECKPOINT_PERIOD)
        self.max_keep = int(solver.MAX_KEEP)
        self.save_dir = layout.checkpoint_root(trainer.cfg.OUTPUT_DIR)
        self.max_iter = int(trainer.plan.batch.max_epoch if trainer.epoch_mode else trainer.max_iter)

    def is_due(self, step: int) -> bool:
        """The seed's cadence for loop counter ``step`` (0-based): every ``check_period``-th and the last."""
        if step >= self.max_iter - 1:
            return True
        return self.check_period > 0 and (int(step) + 1) % self.check_period == 0

    def save(self, model: Any, step: int) -> bool:
        """Save a complete tag of the trainer's current position when the seed's cadence says so.

        Every rank must call it (DeepSpeed saves collectively), as every rank ran the seed's loop.
        The tag is named by the optimizer steps done (``iter_<n>``) and holds the whole
        trainer state, so ``--resume`` continues from it exactly; ``step`` only decides
        whether this call saves. A step the default ``CheckpointHook`` saves anyway is
        written once.

        Args:
            model: the trainer's model bundle (``self.model``); its engines are what is saved.
            step: the seed's loop counter: the step in iteration mode, the epoch in epoch mode.

        Returns:
            Whether a tag was written (or already existed) for this position.
        """
        trainer = self._trainer
        if model is not trainer.model:
            raise EngineError(f"trainer.checkpoint.save: expected the trainer's own model bundle "
                              f"({type(trainer.model).__name__}), got {type(model).__name__}; engine saves every "
                              "engine of trainer.model under one tag")
        if not self.is_due(step):
            return False
        hook = trainer.checkpoint_hook
        if hook is None:
            raise EngineError("trainer.checkpoint.save: the trainer has no CheckpointHook (build_hooks was overridden "
                              "without it), so there is no save sequence to run")
        hook.save_once(trainer.iter + 1)
        return True
