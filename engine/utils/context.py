"""Setting a context variable for the duration of a block."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator


@contextlib.contextmanager
def scoped(variable: contextvars.ContextVar, value: Any) -> Iterator[None]:
    """``variable`` holds ``value`` inside the block and its previous value after it."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)
