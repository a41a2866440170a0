"""The seed's LR schedulers: a warm-up followed by a multi-step, cosine or polynomial shape.

``LRMultiplierScheduler`` is the seed's general form (the shape is named inside
``lr_scheduler_param``); ``WarmupMultiStepLR``, ``WarmupCosineLR`` and
``WarmupPolynomialDecay`` are the same scheduler with the shape's parameters flattened into
the constructor, so configs can name them directly as a scheduler ``type``.

Every scheduler here is stepped once per optimizer step and measures ``max_iter``,
``warmup_iter`` and ``steps`` in optimizer steps. Their ``state_dict`` holds only plain
numbers and strings, so checkpoints load with ``torch.load(weights_only=True)``.

Parameters (all shapes): ``max_iter`` (steps in the whole run), ``warmup_iter`` (steps of
warm-up; 0 disables it; longer than ``max_iter`` is clamped to it with a warning, as in the
seed, so a smoke run with a small ``max_iter`` works), ``warmup_factor`` (LR multiple at step 0), ``warmup_method``
(``linear``: ramp from ``warmup_factor`` to the shape's value at ``warmup_iter``;
``constant``: hold ``warmup_factor`` until ``warmup_iter``).
Shapes (``lr_scheduler_param.name``, then its parameters):

- ``WarmupMultiStepLR``: ``steps`` (iterations), ``gamma=0.1``: multiply by ``gamma`` at each step.
- ``WarmupCosineLR``: ``end_value=0.0``, ``start_value=1.0``: half cosine from ``start_value``
  to ``end_value`` at ``max_iter``.
- ``WarmupPolynomialDecay``: ``power=0.9``, ``end_value=0.0``:
  ``end_value + (1 - end_value) * (1 - t / max_iter) ** power``.

Items of ``lr_scheduler_param`` the named shape does not read (``gamma`` under
``WarmupCosineLR``) are ignored with a warning, as the seed ignored them; a likely
misspelling of any shape's parameter is an error.

``end_value`` is a multiple of each parameter group's base LR, not an absolute LR, so groups
with different base LRs keep their ratio to the end.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Mapping, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from engine.solver._util import plain
from engine.solver.multiplier import WarmupMultiplier, build_shape

logger = logging.getLogger(__name__)

# What ``state_dict`` keeps: enough to continue the schedule, nothing that needs pickling.
_STATE_KEYS = ("base_lrs", "last_epoch", "_step_count", "_last_lr")


class LRMultiplierScheduler(LRScheduler):
    """LR at step ``t`` = base LR x ``multiplier(t)``, the multiplier being warm-up + shape.

    The seed's config names this type with ``lr_scheduler_param=dict(name=..., ...)``; see
    the module docstring for the names and their parameters.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        lr_scheduler_param: Mapping[str, Any],
        max_iter: int,
        warmup_factor: float = 0.001,
        warmup_iter: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
    ) -> None:
        shape = build_shape(lr_scheduler_param, max_iter)
        self._multiplier = WarmupMultiplier(
            shape, max_iter, warmup_factor=warmup_factor, warmup_iter=warmup_iter, warmup_method=warmup_method
        )
        self.max_iter = max_iter
        # Kept (as plain data) only to warn when a resumed run's schedule differs from the saved one.
        self._schedule = plain(dict(
            lr_scheduler_param=lr_scheduler_param, max_iter=max_iter, warmup_factor=warmup_factor,
            warmup_iter=warmup_iter, warmup_method=warmup_method,
        ))
        super().__init__(optimizer, last_epoch)

    def multiplier(self, step: int) -> float:
        """The factor applied to every base LR at ``step``."""
        return self._multiplier(step)

    def get_lr(self) -> List[float]:
        factor = self._multiplier(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]

    # ``step(epoch)`` jumps straight to ``epoch``; the schedule is closed-form already.
    _get_closed_form_lr = get_lr

    def state_dict(self) -> Dict[str, Any]:
        """Step counters and base LRs, plus the schedule's parameters for a mismatch warning."""
        state = {key: copy.copy(self.__dict__[key]) for key in _STATE_KEYS if key in self.__dict__}
        state["schedule"] = copy.deepcopy(self._schedule)
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue the saved schedule and set the optimizer's LRs for the loaded step at once.

        Setting the LRs here (not only at the next ``step()``) makes the LR right after a
        resume equal the straight run's, whether or not the optimizer's own state (which
        also carries ``lr``) is loaded, and in whichever order the two are loaded.
        """
        saved = state_dict.get("schedule")
        if saved is not None and saved != self._schedule:
            logger.warning(
                "Resuming an LR schedule saved with %s under a config that now says %s; "
                "continuing from step %s with the new schedule", saved, self._schedule, state_dict.get("last_epoch"),
            )
        for key in _STATE_KEYS:
            if key in state_dict:
                self.__dict__[key] = copy.copy(state_dict[key])
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = list(lrs)


class WarmupMultiStepLR(LRMultiplierScheduler):
    """Warm-up, then the LR times ``gamma`` at each iteration in ``steps``."""

    def __init__(
        self,
        optimizer: Optimizer,
        max_iter: int,
        steps: Sequence[int],
        gamma: float = 0.1,
        warmup_factor: float = 0.001,
        warmup_iter: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
    ) -> None:
        super().__init__(
            optimizer, dict(name="WarmupMultiStepLR", steps=steps, gamma=gamma), max_iter,
            warmup_factor=warmup_factor, warmup_iter=warmup_iter, warmup_method=warmup_method, last_epoch=last_epoch,
        )


class WarmupCosineLR(LRMultiplierScheduler):
    """Warm-up, then a half cosine from the base LR to ``end_value`` x base LR at ``max_iter``."""

    def __init__(
        self,
        optimizer: Optimizer,
        max_iter: int,
        end_value: float = 0.0,
        warmup_factor: float = 0.001,
        warmup_iter: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
    ) -> None:
        super().__init__(
            optimizer, dict(name="WarmupCosineLR", end_value=end_value), max_iter,
            warmup_factor=warmup_factor, warmup_iter=warmup_iter, warmup_method=warmup_method, last_epoch=last_epoch,
        )


class WarmupPolynomialDecay(LRMultiplierScheduler):
    """Warm-up, then a polynomial decay of ``power`` to ``end_value`` x base LR at ``max_iter``."""

    def __init__(
        self,
        optimizer: Optimizer,
        max_iter: int,
        power: float = 0.9,
        end_value: float = 0.0,
        warmup_factor: float = 0.001,
        warmup_iter: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
    ) -> None:
        super().__init__(
            optimizer, dict(name="WarmupPolynomialDecay", power=power, end_value=end_value), max_iter,
            warmup_factor=warmup_factor, warmup_iter=warmup_iter, warmup_method=warmup_method, last_epoch=last_epoch,
        )


__all__ = ["LRMultiplierScheduler", "WarmupMultiStepLR", "WarmupCosineLR", "WarmupPolynomialDecay"]
