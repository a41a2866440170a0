"""engine: a DeepSpeed-backed PyTorch training framework."""

import importlib.abc
import importlib.util
import sys
from typing import Any, Iterable, Optional, Sequence

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``engine.TORCH_VERSION`` (the seed's (major, minor)), computed on first use: importing
    ``engine`` itself, and so ``engine.config``, must not import torch."""
    if name == "TORCH_VERSION":
        import torch  # lazily: torch is heavy and engine.config must stay torch-free

        return tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


class DeferredImport(importlib.abc.MetaPathFinder):
    """Import the named top-level modules lazily: found now, executed on first attribute use.

    Why: ``deepspeed.runtime.config`` imports ``deepspeed.autotuning``, whose module body runs
    ``import mlflow`` only to note that mlflow is there (for autotuning, which engine never
    runs). Executing mlflow's package costs seconds of CPU in every training process, on
    every rank. With this finder the ``import`` still fails at once when the module is
    missing (the spec is looked up as usual), but its code runs only when something reads
    an attribute or imports a submodule, as engine's own mlflow tracker does. The mechanism
    is the standard library's ``importlib.util.LazyLoader``.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name: str, path: Optional[Sequence[str]] = None, target: Any = None) -> Any:
        """The spec the other finders give ``name``, its loader wrapped lazily; None for other names."""
        if name not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


#: modules no training run needs executed at import time (see DeferredImport)
DEFERRED_MODULES = ("mlflow",)

if not any(isinstance(f, DeferredImport) for f in sys.meta_path):
    sys.meta_path.insert(0, DeferredImport(DEFERRED_MODULES))
