"""engine: a DeepSpeed-backed PyTorch training framework."""

from typing import Any

from engine.deferred_import import DEFERRED_MODULES, DeferredImport, install  # noqa: F401 (engine.DeferredImport is public)

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``engine.TORCH_VERSION`` (the seed's (major, minor)), computed on first use: importing
    ``engine`` itself, and so ``engine.config``, must not import torch."""
    if name == "TORCH_VERSION":
        import torch  # lazily: torch is heavy and engine.config must stay torch-free

        return tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


# before anything imports DeepSpeed: mlflow and DeepSpeed's Muon module are then deferred (see DeferredImport)
install()
