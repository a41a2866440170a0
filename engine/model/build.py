"""Registries of model bundles and networks, and their builders."""

from __future__ import annotations

from typing import Any, Mapping

from engine.utils.registry import Registry

BUILD_MODEL_REGISTRY = Registry("MODEL")
BUILD_MODEL_REGISTRY.__doc__ = "Model bundles (BaseModel subclasses) by name; config: trainer.model.name."

BUILD_NETWORK_REGISTRY = Registry("NETWORK")
BUILD_NETWORK_REGISTRY.__doc__ = "Networks (torch.nn.Module) by name; config: trainer.model.generator = dict(name=..., **params)."


def build_model(cfg: Any) -> Any:
    """The model bundle named by ``trainer.model.name``, constructed with the whole config."""
    cls = BUILD_MODEL_REGISTRY.get_at(cfg.TRAINER.MODEL.NAME, "trainer.model")
    return cls(cfg)


def build_network(spec: Mapping[str, Any], *, where: str) -> Any:
    """A network from ``dict(name=..., **params)``; bad params fail naming ``where``."""
    return BUILD_NETWORK_REGISTRY.build(dict(spec), where=where)
