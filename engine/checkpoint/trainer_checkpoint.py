"""The seed's ``CheckPointerManager`` members of ``trainer.checkpoint`` (a ``Checkpointer``).

Seed trainers read ``self.checkpoint.check_period`` / ``max_keep`` / ``save_dir`` and call
``self.checkpoint.save(self.model, epoch)`` from their own loop code. These members answer
with engine's values and save through the same sequence as ``CheckpointHook``, so a save
made here is the same complete tag (every engine, trainer state, RNG, EMA, marker) the hook
writes, and a step is never written twice when both ask for it.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Dict, Optional

from engine.errors import EngineError


class SeedCheckpointMembers:
    """Mixin of ``Checkpointer``: ``check_period``, ``max_iter``, ``is_due(step)``, ``save(model, step)``.

    Expects ``max_keep``, ``save_dir`` and ``save_once(model, state, step)`` from the class it
    is mixed into. ``save`` needs the trainer's model bundle and state, given once by ``bind``.

    Attributes:
        check_period: ``solver.checkpoint_period`` (0: only at the end).
        max_iter: length of the seed's loop: optimizer steps, or epochs in epoch mode.
    """

    check_period: int = 0
    max_iter: int = 0
    _bound_model: Any = None
    _bound_state: Optional[Callable[[], Any]] = None  # a weak reference, see bind

    def bind(self, model: Any, state: Callable[[], Dict[str, Any]]) -> "SeedCheckpointMembers":
        """Name the model bundle and the trainer-state callable that ``save(model, step)`` saves.

        ``state`` is held by weak reference when it is a bound method (the trainer owns this
        object: no reference cycle keeps the trainer and its engines alive after it is gone).

        Args:
            model: the trainer's model bundle.
            state: the trainer's ``state_dict`` (a bound method).

        Returns:
            self.
        """
        self._bound_model = model
        self._bound_state = weakref.WeakMethod(state) if hasattr(state, "__self__") else (lambda: state)
        return self

    def is_due(self, step: int) -> bool:
        """The seed's cadence for loop counter ``step`` (0-based): every ``check_period``-th and the last."""
        if step >= self.max_iter - 1:
            return True
        return self.check_period > 0 and (int(step) + 1) % self.check_period == 0

    def save(self, model: Any, step: int) -> bool:
        """Save a complete tag of the trainer's current position when the seed's cadence says so.

        Every rank must call it (DeepSpeed saves collectively), as every rank ran the seed's loop.
        The tag is named by the optimizer steps done (``iter_<n>``, from the trainer state) and
        holds the whole trainer state, so ``--resume`` continues from it exactly; ``step`` only
        decides whether this call saves. A step the default ``CheckpointHook`` saves anyway is
        written once.

        Args:
            model: the trainer's model bundle (``self.model``); its engines are what is saved.
            step: the seed's loop counter: the step in iteration mode, the epoch in epoch mode.

        Returns:
            Whether a tag was written (or already existed) for this position.
        """
        bound = self._bound_model
        if bound is None or model is not bound:
            raise EngineError(f"trainer.checkpoint.save: expected the trainer's own model bundle "
                              f"({type(bound).__name__}), got {type(model).__name__}; engine saves every "
                              "engine of trainer.model under one tag")
        if not self.is_due(step):
            return False
        state = self._bound_state()()
        self.save_once(model, state, int(state["iteration"]))
        return True
