"""Launch and run: ``from engine.schedule import BaseScheduler``, as in the seed."""

from engine.schedule.scheduler import BaseScheduler

__all__ = ["BaseScheduler"]
