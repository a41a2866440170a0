"""What happens before the first step: resume a run, or start from pretrained weights."""

from __future__ import annotations

from typing import Any

from engine.checkpoint.weights import load_weights
from engine.errors import EngineError


def resume_or_load(trainer: Any, resume: bool) -> None:
    """``--resume`` → the newest complete checkpoint; else ``trainer.weights`` when set."""
    if resume:
        raise EngineError("--resume: checkpoint resume is not available in this version yet (issue 3)")
    weights = trainer.cfg.TRAINER.WEIGHTS
    if weights:
        load_weights(trainer.model.g_model.module, weights)
