"""The trainer builder; also the seed's import path of ``BUILD_TRAINER_REGISTRY``."""

from __future__ import annotations

from typing import Any

import engine.trainer.trainer  # noqa: F401  (registers BaseTrainer before any lookup)
from engine.trainer.registry import BUILD_TRAINER_REGISTRY

__all__ = ["BUILD_TRAINER_REGISTRY", "build_trainer"]


def build_trainer(cfg: Any) -> Any:
    """The trainer named by ``trainer.name`` (BaseTrainer by default), built from the config."""
    return BUILD_TRAINER_REGISTRY.get_at(cfg.TRAINER.NAME, "trainer")(cfg)
