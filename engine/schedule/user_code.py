"""Importing the user's modules (which registers their classes), also inside spawned workers.

A worker started with the ``spawn`` method re-imports the main script but does not run its
``__main__`` block, so modules imported there would be missing; the list travels in the
environment and each worker imports it again.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Iterable

_MODULES_ENV = "ENGINE_USER_MODULES"
_DIRS_ENV = "ENGINE_USER_CODE_DIRS"


def import_user_modules(modules: Iterable[str], code_dirs: Iterable[str] = ()) -> None:
    """Put ``code_dirs`` on ``sys.path``, import ``modules`` and remember both for workers."""
    dirs = [os.path.abspath(d) for d in code_dirs]
    modules = list(modules)
    for folder in reversed(dirs):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    for module in modules:
        importlib.import_module(module)
    os.environ[_MODULES_ENV] = ",".join(modules)
    os.environ[_DIRS_ENV] = os.pathsep.join(dirs)


def reimport_user_modules() -> None:
    """In a spawned worker: import what the parent's entry point imported."""
    modules = [m for m in os.environ.get(_MODULES_ENV, "").split(",") if m]
    dirs = [d for d in os.environ.get(_DIRS_ENV, "").split(os.pathsep) if d]
    if modules or dirs:
        import_user_modules(modules, dirs)
