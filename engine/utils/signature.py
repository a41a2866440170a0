"""How many positional arguments a user override takes: how engine tells the seed's form of
a callback from engine's own (``iterate_after(epoch)`` vs ``iterate_after(epoch, loss_dict)``)."""

from __future__ import annotations

import inspect
import math
from typing import Callable


def positional_capacity(method: Callable) -> float:
    """Positional arguments ``method`` (bound) accepts, counting those with defaults; ``inf`` with ``*args``."""
    count = 0
    for param in inspect.signature(method).parameters.values():
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            return math.inf
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def overrides(instance: object, base: type, name: str) -> bool:
    """Whether ``type(instance)`` defines ``name`` itself somewhere below ``base``."""
    return getattr(type(instance), name) is not getattr(base, name)
