"""Checks of registry names and constructor arguments that can run before anything starts.

Validation of the config file itself knows nothing of the user's classes. Once the user's
modules are imported (the training script did that), every registry name the config uses
and the framework-built objects (transforms, the client optimizer) can be resolved, so a
misspelled dataset or transform fails in a second, with its key path, instead of after the
process group, the logs and the model were set up.
"""

from __future__ import annotations

from typing import Any, Mapping

from engine.checkpoint.preempt import signal_numbers
from engine.errors import ConfigError

_DATA_SETS = ("train_data_set", "val_data_set", "test_data_set")


class _NoSamples:
    """Stands in for a dataset so that mix transforms (mosaic) can be constructed for checking."""

    def __len__(self) -> int:
        return 1

    def get_results(self, index: int) -> dict:
        raise RuntimeError("preflight dataset holds no samples")


def preflight(cfg: Any) -> None:
    """Resolve every registry name in ``cfg`` and build what engine builds from plain config.

    Raises:
        engine.errors.EngineError: naming the key path of the first problem found.
    """
    import engine.transforms  # noqa: F401  (registers the transforms)
    import engine.trainer.trainer  # noqa: F401  (registers BaseTrainer)
    from engine.data.build import BUILD_DATASET_REGISTRY
    from engine.model.build import BUILD_MODEL_REGISTRY, BUILD_NETWORK_REGISTRY
    from engine.trainer.build import BUILD_TRAINER_REGISTRY
    from engine.transforms.build import build_transforms

    BUILD_TRAINER_REGISTRY.get_at(cfg.TRAINER.NAME, "trainer")
    BUILD_MODEL_REGISTRY.get_at(cfg.TRAINER.MODEL.NAME, "trainer.model")
    BUILD_NETWORK_REGISTRY.get_at(cfg.TRAINER.MODEL.GENERATOR.NAME, "trainer.model.generator")
    for key in _DATA_SETS:
        spec = cfg.DATALOADER.get(key)
        if not spec:
            continue
        where = f"dataloader.{key}"
        BUILD_DATASET_REGISTRY.get_at(spec["name"], where)
        transformer = spec.get("transformer")
        if transformer is not None and not isinstance(transformer, (list, tuple)):
            raise ConfigError(f"{where}.transformer: expected a list of transform dicts, got {transformer!r}")
        build_transforms(transformer or [], where=f"{where}.transformer", dataset=_NoSamples())
    signal_numbers(cfg.SOLVER.SAVE_ON_SIGNAL)
    _check_optimizer(cfg.SOLVER.GENERATOR, "solver.generator")
    _check_lr_scheduler(cfg, cfg.SOLVER.GENERATOR, "solver.generator")


def _check_optimizer(solver: Mapping[str, Any], where: str) -> None:
    """Build a client optimizer on a dummy parameter; DeepSpeed's own types are checked by ds_config."""
    import torch

    from engine.solver import build_optimizer, deepspeed_optimizer_name

    spec = solver["optimizer"]
    if deepspeed_optimizer_name(spec["type"]) is None:
        build_optimizer(spec, [torch.nn.Parameter(torch.zeros(1))], where=f"{where}.optimizer")


def _check_lr_scheduler(cfg: Any, solver: Mapping[str, Any], where: str) -> None:
    """Build the scheduler on a throwaway optimizer, when the run length is already known.

    In epoch mode the length depends on the dataset, so a scheduler that leaves ``max_iter``
    to engine is checked when the model is built instead.
    """
    from engine.solver import lr_scheduler_factory

    spec = solver["lr_scheduler"]
    if cfg.TRAINER.ENABLE_EPOCH_METHOD and "max_iter" not in (spec.get("params") or {}):
        return
    lr_scheduler_factory(spec, where=f"{where}.lr_scheduler", defaults={"max_iter": cfg.SOLVER.MAX_ITER})
