"""What a tracker writer is, the registry that names them, and the check ``trainer.loggers`` gets.

A writer receives the floats of the training's metrics window and hands them to one
backend (a CSV file, MLflow, W&B, ...). The loop drives every writer the same way, on
rank 0 only::

    writer.open(run_info)            # once, at train start
    writer.write(step, metrics)      # at each log boundary (and at each evaluation)
    writer.close()                   # at the end, also when training raised

This module imports neither torch nor a backend library: the config check imports it to
validate ``trainer.loggers`` in milliseconds, and a backend is imported only by its
writer's ``open``. A missing backend is found here with ``importlib.util.find_spec``,
which looks for the package without importing it.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence

import yaml

from engine.errors import ConfigError
from engine.utils.fileio import atomic_write_text
from engine.utils.registry import Registry
from engine.utils.suggest import did_you_mean


@dataclass(frozen=True)
class RunInfo:
    """What a writer learns about the run when it opens.

    Args:
        output_dir: the run's ``output_dir``; file-based writers write under it.
        config: the resolved config as plain dicts and lists.
        plan: the run plan as plain dicts and lists (what ``plan.json`` holds).
        name: a human name for the run (backends that show runs side by side use it).
        start_step: the step training starts from: 0 for a fresh run, the checkpoint's
            step on resume. Writers that keep history drop what a killed run wrote after
            that step, so a resumed run's history has each step once.
    """

    output_dir: str
    config: Mapping[str, Any] = field(default_factory=dict)
    plan: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    start_step: int = 0

    def config_yaml(self) -> str:
        """The config as the YAML text every backend stores beside the run."""
        return yaml.safe_dump(dict(self.config), sort_keys=False, default_flow_style=False)

    def plan_json(self) -> str:
        """The run plan as the JSON text every backend stores beside the run."""
        return json.dumps(self.plan, indent=2, default=str)

    def resumed_run_id(self, file_name: str) -> Optional[str]:
        """The backend run id kept in ``output_dir/<file_name>``, when this run resumes one; else None."""
        path = os.path.join(self.output_dir, file_name)
        if self.start_step <= 0 or not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None

    def keep_run_id(self, file_name: str, run_id: str) -> None:
        """Store ``run_id`` in ``output_dir/<file_name>`` (atomically), for a resumed run to continue it."""
        atomic_write_text(os.path.join(self.output_dir, file_name), run_id + "\n")


class TrackerWriter:
    """Base of the writers ``trainer.loggers`` names; subclasses register under ``name``.

    Class attributes:
        name: the name written in ``trainer.loggers``.
        module: the top-level module the writer imports in ``open`` ("" when stdlib only);
            the config check fails naming ``pip`` when it is not installed.
        pip: what to ``pip install`` to get ``module``.
    """

    name: ClassVar[str] = ""
    module: ClassVar[str] = ""
    pip: ClassVar[str] = ""

    def open(self, run_info: RunInfo) -> None:
        """Start the run in the backend (create files, a run, a client)."""

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record ``metrics`` (name -> float) at optimizer step ``step`` (counted from 1)."""
        raise NotImplementedError

    def close(self, failed: bool = False) -> None:
        """Flush and end the run; ``failed`` marks a run that ended by an exception.

        Called once after ``open``, whatever happened; a second call does nothing.
        """


class _TrackerRegistry(Registry):
    """Writers are registered under their ``name`` attribute (what users write), not their class name."""

    def register(self, obj: Any = None) -> Any:
        def deco(cls: Any) -> Any:
            if not getattr(cls, "name", ""):
                raise ValueError(f"{cls.__qualname__}: a tracker writer needs a non-empty `name`")
            self._do_register(cls.name, cls)
            return cls

        return deco if obj is None else deco(obj)


TRACKER_REGISTRY = _TrackerRegistry("TRACKER")
TRACKER_REGISTRY.__doc__ = "Tracker writers that ``trainer.loggers`` names (csv, jsonl, mlflow, wandb, tensorboard)."


def check_loggers(names: Any, where: str = "trainer.loggers") -> List[str]:
    """Validate a ``trainer.loggers`` list: known names, each once, backends installed.

    Args:
        names: the value as written (a list of strings).
        where: its config key path, named in every error.

    Returns:
        The names, lowercased, in the order given.

    Raises:
        ConfigError: an entry that is not a string, an unknown name (with the closest
            registered ones), a repeated name, or a name whose package is not installed
            (with the ``pip install`` line).
    """
    if not isinstance(names, (list, tuple)):
        raise ConfigError(f"{where} = {names!r}: expected a list of tracker names, e.g. ['tensorboard', 'csv']")
    known = TRACKER_REGISTRY.names()
    checked: List[str] = []
    for index, raw in enumerate(names):
        at = f"{where}[{index}]"
        if not isinstance(raw, str):
            raise ConfigError(f"{at} = {raw!r}: expected a tracker name (str); valid names: {', '.join(known)}")
        name = raw.lower()
        if name not in known:
            raise ConfigError(f"{at} = {raw!r}: unknown tracker.{did_you_mean(raw, known)} Valid names: {', '.join(known)}")
        if name in checked:
            raise ConfigError(f"{at} = {raw!r} repeats {where}[{checked.index(name)}]; list each tracker once")
        writer = TRACKER_REGISTRY.get(name)
        if writer.module and importlib.util.find_spec(writer.module) is None:
            raise ConfigError(f"{at} = {raw!r} needs the Python package {writer.pip!r} (module {writer.module!r}), "
                              f"which is not installed: pip install {writer.pip}")
        checked.append(name)
    return checked


def build_writers(names: Sequence[str]) -> List[TrackerWriter]:
    """One unopened writer per name of a checked ``trainer.loggers`` list, in order."""
    return [TRACKER_REGISTRY.get(name)() for name in names]


def flatten(tree: Any, prefix: str = "") -> Dict[str, Any]:
    """``{"a": {"b": 1}, "c": [2]}`` -> ``{"a.b": 1, "c.0": 2}``: a config as flat parameters.

    Backends whose parameters are flat (MLflow) get the resolved config this way; an
    empty dict or list stays one entry, so a key that was set to ``{}`` is still seen.
    """
    items = tree.items() if isinstance(tree, Mapping) else enumerate(tree) if isinstance(tree, (list, tuple)) else None
    if items is None or not tree:
        return {prefix: tree} if prefix else {}
    flat: Dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat
