"""engine: a DeepSpeed-backed PyTorch training framework."""

import importlib.abc
import importlib.machinery
import sys
import threading
import types
from typing import Any, Iterable, Optional, Sequence

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``engine.TORCH_VERSION`` (the seed's (major, minor)), computed on first use: importing
    ``engine`` itself, and so ``engine.config``, must not import torch."""
    if name == "TORCH_VERSION":
        import torch  # lazily: torch is heavy and engine.config must stay torch-free

        return tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


#: module attributes a deferred module answers without running its code: what the import system
#: sets from the spec, and what scans of ``sys.modules`` read (``inspect.getmodule``, which
#: torch.library calls for every custom op registered, asks each module for ``__file__``)
_UNEXECUTED_ATTRS = frozenset({"__name__", "__file__", "__cached__", "__spec__", "__loader__", "__package__",
                               "__class__"})
_LOAD_LOCK = threading.RLock()


class _DeferredModule(types.ModuleType):
    """A module found and placed in ``sys.modules`` whose code runs on first real use.

    Any attribute other than the import metadata above (a function, a submodule's ``__path__``
    lookup, ``vars()``) runs the module's code first, in this same module object, so every
    reference taken earlier sees the loaded module.
    """

    def __getattribute__(self, attr: str) -> Any:
        if attr in _UNEXECUTED_ATTRS:
            return types.ModuleType.__getattribute__(self, attr)
        with _LOAD_LOCK:
            if type(self) is _DeferredModule:  # not loaded by another thread meanwhile
                self.__class__ = types.ModuleType
                spec = self.__spec__
                spec.loader = self.__loader__ = spec.loader.wrapped
                spec.loader.exec_module(self)
        return getattr(self, attr)


class _DeferredLoader(importlib.abc.Loader):
    """Wraps a module's own loader: creates the module now, executes it on first use."""

    def __init__(self, wrapped: importlib.abc.Loader) -> None:
        self.wrapped = wrapped

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return self.wrapped.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__class__ = _DeferredModule


class DeferredImport(importlib.abc.MetaPathFinder):
    """Import the named top-level modules lazily: found now, executed on first attribute use.

    Why: ``deepspeed.runtime.config`` imports ``deepspeed.autotuning``, whose module body runs
    ``import mlflow`` only to note that mlflow is there (for autotuning, which engine never
    runs). Executing mlflow's package costs ~2 CPU seconds in every training process, on every
    rank. With this finder ``import mlflow`` still fails at once when mlflow is missing (its
    spec is looked up as usual), but its code runs only when something uses it, as engine's
    own MLflow tracker does.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name: str, path: Optional[Sequence[str]] = None, target: Any = None) -> Any:
        """The spec the other finders give ``name``, its loader wrapped; None for other names.

        Args:
            name: the module being imported.
            path: the parent package's ``__path__`` (None for a top-level module).
            target: the module object being reloaded, if any.

        Returns:
            A ``ModuleSpec`` with a deferring loader, or None to let the other finders answer.
        """
        if name not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _DeferredLoader(spec.loader)
                return spec
        return None


#: modules no training run needs executed at import time (see DeferredImport)
DEFERRED_MODULES = ("mlflow",)

if not any(isinstance(f, DeferredImport) for f in sys.meta_path):
    sys.meta_path.insert(0, DeferredImport(DEFERRED_MODULES))
