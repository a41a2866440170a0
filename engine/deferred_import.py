"""Deferred imports: modules a training run never needs are found at import time, run later.

Why its own module: this is import machinery (a ``sys.meta_path`` finder and two loaders),
installed by ``import engine`` before anything imports DeepSpeed; it uses the standard
library only, so it sits below every other part of engine.
"""

import functools
import importlib.abc
import importlib.machinery
import sys
import threading
import types
from typing import Any, Dict, List, Optional, Sequence

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


class _CompileOnFirstCall:
    """What a ``torch.compile`` decorator gives a function of a module imported under :class:`_CompiledLater`.

    The first call of any such function of the module compiles them all, exactly as the
    decorator would have at import, and puts the compiled functions in the module's globals
    in place of these stand-ins, so compiled code calling another one meets the real thing.
    """

    def __init__(self, fn: Any, decorate: Any) -> None:
        functools.update_wrapper(self, fn)
        self._fn, self._decorate, self._compiled = fn, decorate, None
        _PENDING_COMPILES.setdefault(fn.__module__, []).append(self)

    def _resolve(self) -> Any:
        with _LOAD_LOCK:
            for stand_in in _PENDING_COMPILES.pop(self._fn.__module__, []):
                stand_in._compiled = stand_in._decorate(stand_in._fn)
                namespace = stand_in._fn.__globals__
                if namespace.get(stand_in.__name__) is stand_in:
                    namespace[stand_in.__name__] = stand_in._compiled
        return self._compiled

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return (self._compiled or self._resolve())(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:  # the compiled function's own attributes
        if attr.startswith("__") or attr in ("_fn", "_decorate", "_compiled"):
            raise AttributeError(attr)
        return getattr(self._compiled or self._resolve(), attr)


_PENDING_COMPILES: Dict[str, List[_CompileOnFirstCall]] = {}


class _CompiledLater(importlib.abc.Loader):
    """Runs a module with DeepSpeed's ``compiler.compile()`` decorator deferring to the first call.

    Why: DeepSpeed's ZeRO set-up imports its Muon optimizer module on every run, only to check
    whether the optimizer is one, and that module ``torch.compile``-decorates three functions
    at import, which imports ``torch._inductor`` (~2 CPU s per rank). Decorated on first call
    instead, they are compiled the same way, and only by a run that uses Muon.
    """

    #: the module whose ``compile()`` gives the decorator (imported before the deferred module is)
    compiler = "deepspeed.runtime.compiler"

    def __init__(self, wrapped: importlib.abc.Loader) -> None:
        self.wrapped = wrapped

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return self.wrapped.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        compiler = sys.modules.get(self.compiler)
        real = getattr(compiler, "compile", None)
        if real is None:  # a DeepSpeed without that decorator factory: nothing to defer
            self.wrapped.exec_module(module)
            return

        def deferring(*args: Any, **kwargs: Any) -> Any:
            return lambda fn: _CompileOnFirstCall(fn, lambda f: real(*args, **kwargs)(f))

        compiler.compile = deferring
        try:
            self.wrapped.exec_module(module)
        finally:
            compiler.compile = real


class DeferredImport(importlib.abc.MetaPathFinder):
    """Imports the named modules through a deferring loader.

    ``mlflow``: found now, executed on first attribute use. Why: ``deepspeed.runtime.config``
    imports ``deepspeed.autotuning``, whose module body runs ``import mlflow`` only to note
    that mlflow is there (for autotuning, which engine never runs). Executing mlflow's package
    costs ~2 CPU seconds in every training process, on every rank. With this finder ``import
    mlflow`` still fails at once when mlflow is missing (its spec is looked up as usual), but
    its code runs only when something uses it, as engine's own MLflow tracker does.

    DeepSpeed's Muon module: executed now, its compiled functions compiled on first call
    (:class:`_CompiledLater`).

    Args:
        loaders: module name → the loader class that wraps the module's own loader.
    """

    def __init__(self, loaders: Dict[str, Any]) -> None:
        self.loaders = dict(loaders)

    def find_spec(self, name: str, path: Optional[Sequence[str]] = None, target: Any = None) -> Any:
        """The spec the other finders give ``name``, its loader wrapped; None for other names.

        Args:
            name: the module being imported.
            path: the parent package's ``__path__`` (None for a top-level module).
            target: the module object being reloaded, if any.

        Returns:
            A ``ModuleSpec`` with a deferring loader, or None to let the other finders answer.
        """
        wrap = self.loaders.get(name)
        if wrap is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = wrap(spec.loader)
                return spec
        return None


#: modules no training run needs run as they are at import time (see DeferredImport)
DEFERRED_MODULES = {"mlflow": _DeferredLoader, "deepspeed.runtime.zero.muon.original_muon": _CompiledLater}


def install() -> None:
    """Put one :class:`DeferredImport` of :data:`DEFERRED_MODULES` first on ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(f, DeferredImport) for f in sys.meta_path):
        sys.meta_path.insert(0, DeferredImport(DEFERRED_MODULES))
