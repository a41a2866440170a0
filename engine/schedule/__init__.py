"""Launch and run: ``from engine.schedule import BaseScheduler``, as in the seed.

``BaseScheduler`` is resolved on first use: importing the package (or its light modules,
``engine.schedule.args``) must not pay for torch and the trainer stack, which the
scheduler module imports.
"""

from typing import Any

__all__ = ["BaseScheduler"]


def __getattr__(name: str) -> Any:
    """``engine.schedule.BaseScheduler``, imported from its module on first access."""
    if name == "BaseScheduler":
        from engine.schedule.scheduler import BaseScheduler  # heavy (torch, trainer stack): on first use

        return BaseScheduler
    raise AttributeError(f"module 'engine.schedule' has no attribute {name!r}")
