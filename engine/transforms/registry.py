"""The transform registry and ``build_transform`` (one spec), under ``pipe.py``, whose Compose/OneOf build their children."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from engine.errors import ConfigError
from engine.utils.registry import Registry

BUILD_TRANSFORMER_REGISTRY = Registry("TRANSFORMER")


def _accepts(factory: Any, param: str) -> bool:
    try:
        return param in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def build_transform(spec: Any, *, where: str = "transformer", dataset: Any = None) -> Callable[[dict], dict]:
    """Build one transform from ``dict(name=..., **params)``; a callable passes through.

    A ``transforms`` list inside the spec (``Compose``, ``OneOf``, ``RandomChoice``) is built
    first, item by item, so an error deep inside names its full path
    (``...transformer[2].transforms[0].p``).

    Args:
        spec: the config dict, or an already built transform.
        where: the config key path of ``spec``, named in every error.
        dataset: handed to transforms whose constructor takes ``dataset`` (mosaic).

    Returns:
        The transform, a callable ``results -> results``.
    """
    if callable(spec) and not isinstance(spec, Mapping):
        return spec
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(f"{where}: expected dict(name=<transform>, ...) or a callable, got {spec!r}")
    factory = BUILD_TRANSFORMER_REGISTRY.get_at(spec["name"], where)
    spec = dict(spec)
    children = spec.get("transforms")
    if isinstance(children, (list, tuple)):
        spec["transforms"] = [build_transform(c, where=f"{where}.transforms[{i}]", dataset=dataset)
                              for i, c in enumerate(children)]
    extra = {"dataset": dataset} if dataset is not None and "dataset" not in spec and \
        _accepts(factory, "dataset") else {}
    try:
        return BUILD_TRANSFORMER_REGISTRY.build(spec, where=where, **extra)
    except ConfigError as exc:
        if str(exc).startswith(where):  # already names its path (a bad keyword, or a nested item)
            raise
        raise ConfigError(f"{where}: {exc}") from None
