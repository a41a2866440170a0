"""Tracker writers: the metrics window's floats, to the backends ``trainer.loggers`` names.

Importing the package registers the built-in writers (``csv``, ``jsonl``, ``mlflow``,
``wandb``, ``tensorboard``); none of their backends is imported until a writer opens.
A project adds its own with ``@TRACKER_REGISTRY.register()`` on a ``TrackerWriter``
subclass that sets ``name`` (and ``module``/``pip`` if it needs a package). See
docs/trackers.md.
"""

from engine.trackers import files, mlflow_run, tensorboard_events, wandb_run  # noqa: F401  (register the writers)
from engine.trackers.base import TRACKER_REGISTRY, RunInfo, TrackerWriter, build_writers, check_loggers, flatten
from engine.trackers.group import TrackerGroup

__all__ = ["TRACKER_REGISTRY", "RunInfo", "TrackerWriter", "TrackerGroup", "build_writers", "check_loggers", "flatten"]
