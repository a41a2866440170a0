"""``BestCheckpointHook``: keep the checkpoint with the best evaluation metric as tag ``best``."""

from __future__ import annotations

import logging
import math
import os
import shutil
from typing import Any, Dict, Optional

from engine import comm
from engine.checkpoint import layout
from engine.errors import EngineError
from engine.events.hooks import HookBase
from engine.trainer.hooks import EvalHook
from engine.checkpoint.state import new_sync_group

logger = logging.getLogger("engine")

BEST = "best"
STAGING = "best.new"  # written whole, then renamed over ``best``: a crash mid-save keeps the old best


class BestCheckpointHook(HookBase):
    """After each evaluation, saves tag ``best`` when ``metric`` improved (every rank saves).

    Metrics are gathered across ranks before they reach this hook, so every rank takes the
    same decision and joins the same collective save. ``best`` is not an ``iter_`` tag:
    rotation (``solver.max_keep``) never removes it and ``--resume`` never picks it. On
    resume the best value so far is read back from its marker, so a worse metric after a
    restart does not replace it.

    Args:
        eval_hook: the hook whose results are judged (it runs before this one).
        metric: a key of the evaluation results (``solver.best_metric``).
        mode: ``max`` or ``min`` (``solver.best_mode``).
    """

    def __init__(self, eval_hook: EvalHook, metric: str, mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise EngineError(f"solver.best_mode: expected 'max' or 'min', got {mode!r}")
        self.eval_hook = eval_hook
        self.metric = metric
        self.mode = mode
        self.best: Optional[float] = None
        self._group: Any = None

    def before_train(self) -> None:
        if self.trainer.val_loader is None:
            raise EngineError(f"solver.best_metric = {self.metric!r} needs a validation set (dataloader.val_data_set)")
        self._group = new_sync_group()
        if self.trainer.start_iter > 0:
            self.best = previous_best(self.trainer.cfg.OUTPUT_DIR, self.metric, self.mode)

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
        save_best(self.trainer, step, {"metric": self.metric, "mode": self.mode, "value": value}, self._group)
        logger.info(f"best checkpoint: {self.metric} {value:.6g} at step {step}"
                    + (f" (was {previous:.6g})" if previous is not None else ""))


def save_best(trainer: Any, step: int, info: Dict[str, Any], group: Any = None) -> str:
    """Save ``best.new`` through the normal checkpoint sequence, then rename it to ``best``."""
    from engine.checkpoint.saver import save_checkpoint  # lazy: heavy, deepspeed comes with checkpoint.async_writer

    root = layout.checkpoint_root(trainer.cfg.OUTPUT_DIR)
    save_checkpoint(trainer, step, group, tag=STAGING, marker_extra={"best": info})
    if comm.is_main_process():
        _promote(root)
    comm.synchronize()  # no rank starts the next save of best.new before the rename
    return os.path.join(root, BEST)


def _promote(root: str) -> None:
    best, staging, old = (os.path.join(root, name) for name in (BEST, STAGING, BEST + ".old"))
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(best):
        os.rename(best, old)
    os.rename(staging, best)
    layout.fsync_dir(root)
    shutil.rmtree(old, ignore_errors=True)


def previous_best(output_dir: str, metric: str, mode: str) -> Optional[float]:
    """The value stored with a complete ``best`` tag for the same metric and mode, else None."""
    tag_dir = os.path.join(layout.checkpoint_root(output_dir), BEST)
    if not layout.check_complete(tag_dir)[0]:
        return None
    info = layout.read_marker(tag_dir).get("best", {})
    if info.get("metric") != metric or info.get("mode") != mode:
        return None
    return float(info["value"])
