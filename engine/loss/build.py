"""The loss registry and the one function that turns a config entry into a loss module."""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from engine.errors import ConfigError, RegistryError
from engine.utils.registry import Registry, instantiate

LOSS_ARCH_REGISTRY = Registry("LOSS_ARCH")
LOSS_ARCH_REGISTRY.__doc__ = """Losses by name; importing ``engine.loss`` registers the built-in ones.

Register your own with ``@LOSS_ARCH_REGISTRY.register()`` on a ``WeightedLoss`` subclass.
"""


class UnknownLossError(ConfigError, RegistryError):
    """A loss name that is not registered: a config mistake, caught as either error type."""


def build_loss(name: Any, params: Mapping[str, Any], *, where: str) -> nn.Module:
    """Construct the registered loss ``name`` with ``params``.

    Args:
        name: a registered loss name, e.g. ``'CrossEntropyLoss'``.
        params: its constructor keyword arguments (``lambda_weight`` and the loss's own).
        where: the config key path of the entry, named in every error.

    Returns:
        The loss module.

    Raises:
        ConfigError: unknown name (the closest registered names are listed), unknown or
            missing parameter, or a parameter value the loss rejects.
    """
    try:
        cls = LOSS_ARCH_REGISTRY.get_at(name, where)
    except RegistryError as exc:
        raise UnknownLossError(str(exc)) from None
    try:
        return instantiate(cls, dict(params), where=where)
    except ConfigError as exc:
        if str(exc).startswith(where):
            raise
        # a value rejected inside the constructor: add the path the user must fix
        raise ConfigError(f"{where} ({name}): {exc}") from None
