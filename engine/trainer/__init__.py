"""The trainer and its registry: the names seed-era code imports from ``engine.trainer``."""

from engine.trainer.build import BUILD_TRAINER_REGISTRY, build_trainer
from engine.trainer.trainer import BaseTrainer

__all__ = ["BUILD_TRAINER_REGISTRY", "BaseTrainer", "build_trainer"]
