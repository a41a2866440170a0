"""``BestCheckpointHook``: keep the checkpoint with the best evaluation metric as tag ``best``."""

from __future__ import annotations

import logging
import math
from typing import Any, Optional

from engine.checkpoint.checkpointer import Checkpointer
from engine.errors import EngineError
from engine.events.hooks import HookBase

logger = logging.getLogger("engine")


class BestCheckpointHook(HookBase):
    """After each evaluation, saves tag ``best`` when ``metric`` improved (every rank saves).

    Metrics are gathered across ranks before they reach this hook, so every rank takes the
    same decision and joins the same collective save. ``best`` is not an ``iter_`` tag:
    rotation (``solver.max_keep``) never removes it and ``--resume`` never picks it. On
    resume the best value so far comes from the checkpointer (it read the ``best`` marker
    once), so a worse metric after a restart does not replace it.

    Args:
        checkpointer: the run's ``Checkpointer`` (``trainer.checkpoint``); it owns the ``best`` tag.
        eval_hook: the hook whose results are judged (it runs before this one): it has
            ``last_step`` (the step of its latest evaluation) and ``latest`` (its metrics).
        metric: a key of the evaluation results (``solver.best_metric``).
        mode: ``max`` or ``min`` (``solver.best_mode``).
    """

    def __init__(self, checkpointer: Checkpointer, eval_hook: Any, metric: str, mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise EngineError(f"solver.best_mode: expected 'max' or 'min', got {mode!r}")
        self.checkpointer = checkpointer
        self.eval_hook = eval_hook
        self.metric = metric
        self.mode = mode
        self.best: Optional[float] = None

    def before_train(self) -> None:
        if self.trainer.val_loader is None:
            raise EngineError(f"solver.best_metric = {self.metric!r} needs a validation set (dataloader.val_data_set)")
        self.checkpointer.start()
        self.best = self.checkpointer.previous_best(self.metric, self.mode)

    def improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def after_step(self) -> None:
        step = self.trainer.iter + 1
        if self.eval_hook.last_step != step:
            return
        metrics = self.eval_hook.latest
        if self.metric not in metrics:
            raise EngineError(f"solver.best_metric = {self.metric!r} is not an evaluation result; "
                              f"evaluate returned: {', '.join(sorted(metrics)) or '(nothing)'}")
        value = metrics[self.metric]
        if not self.improved(value):
            return
        previous, self.best = self.best, value
        record = {"metric": self.metric, "mode": self.mode, "value": value}
        self.checkpointer.save_best(self.trainer.model, self.trainer.state_dict, step, record)
        logger.info(f"best checkpoint: {self.metric} {value:.6g} at step {step}"
                    + (f" (was {previous:.6g})" if previous is not None else ""))
