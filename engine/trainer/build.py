"""The trainer registry and its builder."""

from __future__ import annotations

from typing import Any

from engine.utils.registry import Registry

BUILD_TRAINER_REGISTRY = Registry("TRAINER")
BUILD_TRAINER_REGISTRY.__doc__ = "Trainers (BaseTrainer subclasses) by name; config: trainer.name."


def build_trainer(cfg: Any) -> Any:
    """The trainer named by ``trainer.name`` (BaseTrainer by default), built from the config."""
    import engine.trainer.trainer  # noqa: F401  (registers BaseTrainer)

    return BUILD_TRAINER_REGISTRY.get_at(cfg.TRAINER.NAME, "trainer")(cfg)
