"""Registries of model bundles and networks, and their builders."""

from __future__ import annotations

import contextvars
from typing import Any, ContextManager, Mapping, Optional

from engine.utils.context import scoped
from engine.utils.registry import Registry

BUILD_MODEL_REGISTRY = Registry("MODEL")
BUILD_MODEL_REGISTRY.__doc__ = "Model bundles (BaseModel subclasses) by name; config: trainer.model.name."

BUILD_NETWORK_REGISTRY = Registry("NETWORK")
BUILD_NETWORK_REGISTRY.__doc__ = "Networks (torch.nn.Module) by name; config: trainer.model.generator = dict(name=..., **params)."


#: optimizer steps of the run being built; epoch mode knows it only once the data is loaded
_PLANNED_STEPS: contextvars.ContextVar[Optional[int]] = contextvars.ContextVar("planned_steps", default=None)


def planned_steps(steps: int) -> ContextManager[None]:
    """Tell model bundles built inside this block how many optimizer steps the run takes."""
    return scoped(_PLANNED_STEPS, steps)


def current_planned_steps(cfg: Any) -> int:
    """The run's optimizer steps: set by the trainer, else ``solver.max_iter``."""
    steps = _PLANNED_STEPS.get()
    return steps if steps is not None else int(cfg.SOLVER.MAX_ITER)


def build_model(cfg: Any) -> Any:
    """The model bundle named by ``trainer.model.name``, constructed with the whole config."""
    cls = BUILD_MODEL_REGISTRY.get_at(cfg.TRAINER.MODEL.NAME, "trainer.model")
    return cls(cfg)


def build_network(spec: Mapping[str, Any], *, where: str = "trainer.model.generator") -> Any:
    """A network from ``dict(name=..., **params)``; bad params fail naming ``where``.

    ``build_network(cfg)`` with one argument is the seed's call; ``where`` is then the
    generator's key path, the spec a seed model's ``create_model(params)`` receives.
    """
    return BUILD_NETWORK_REGISTRY.build(dict(spec), where=where)
