"""The dataset registry and its builder."""

from __future__ import annotations

import contextvars
from typing import Any, Mapping

from engine.utils.context import scoped
from engine.utils.registry import Registry

BUILD_DATASET_REGISTRY = Registry("DATASET")
BUILD_DATASET_REGISTRY.__doc__ = "Datasets by name; config: dataloader.{train,val,test}_data_set = dict(name=..., **params)."

#: the config path of the dataset being built, so EngineDataSet can name it in transform errors
_BUILDING_AT: contextvars.ContextVar[str] = contextvars.ContextVar("dataset_config_path", default="dataset")


def current_config_path() -> str:
    return _BUILDING_AT.get()


def build_dataset(spec: Mapping[str, Any], *, where: str) -> Any:
    """Instantiate ``spec['name']`` from the registry with the rest of ``spec`` as arguments.

    Args:
        spec: ``dict(name=..., transformer=[...], **params)`` from the config.
        where: its config key path (``dataloader.train_data_set``), named in errors.
    """
    with scoped(_BUILDING_AT, where):
        return BUILD_DATASET_REGISTRY.build(dict(spec), where=where)
