"""The trainer registry, in a module of its own so the trainer can register itself without a cycle."""

from __future__ import annotations

from engine.utils.registry import Registry

BUILD_TRAINER_REGISTRY = Registry("TRAINER")
BUILD_TRAINER_REGISTRY.__doc__ = "Trainers (BaseTrainer subclasses) by name; config: trainer.name."
