"""``StepResult``: what one micro-step tells the loop, returned rather than left on the model.

The loop used to reset a flag on the model before each step and read it back after; now
the model bundle's ``train_micro_step`` returns this, and the loop combines the results of
a step's micro-batches. State flows one way: model -> loop -> hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict


@dataclass
class StepResult:
    """The outcome of one ``train_micro_step``.

    Args:
        outputs: what to log for this micro-batch (name -> tensor or float, detached).
        skipped: the optimizer update this micro-batch ended was dropped because the loss
            or gradients were not finite (``solver.nan_policy``).
        boundary: this micro-batch ended a gradient-accumulation window (an optimizer step ran).
    """

    outputs: Dict[str, Any] = field(default_factory=dict)
    skipped: bool = False
    boundary: bool = True


class Rewind(Exception):
    """Raised by a step that moved the run back (a rollback reloaded a checkpoint): the loop goes on at ``step``.

    The step that raised it did not happen: its hooks' ``after_step`` is not called and
    what it put in the event storage is dropped.

    Args:
        step: the next step to run (0-based: optimizer steps already done).
    """

    def __init__(self, step: int) -> None:
        super().__init__(f"continue at step {step}")
        self.step = int(step)
