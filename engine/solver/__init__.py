"""Optimizers and LR schedulers: the seed's warm-up schedulers, torch's, and DeepSpeed's optimizer types."""

from engine.solver.build import (
    LR_SCHEDULER_REGISTRY,
    OPTIMIZER_REGISTRY,
    build_lr_scheduler,
    build_optimizer,
    lr_scheduler_factory,
    torch_optimizer_names,
)
from engine.solver.deepspeed_optimizers import (
    DEEPSPEED_OPTIMIZER_TYPES,
    deepspeed_optimizer_config,
    deepspeed_optimizer_name,
)
from engine.solver.lr_scheduler import (
    LRMultiplierScheduler,
    WarmupCosineLR,
    WarmupMultiStepLR,
    WarmupPolynomialDecay,
)
from engine.solver.multiplier import LR_MULTIPLIER_SHAPES, WarmupMultiplier

__all__ = [
    "DEEPSPEED_OPTIMIZER_TYPES",
    "LR_MULTIPLIER_SHAPES",
    "LR_SCHEDULER_REGISTRY",
    "OPTIMIZER_REGISTRY",
    "LRMultiplierScheduler",
    "WarmupCosineLR",
    "WarmupMultiStepLR",
    "WarmupMultiplier",
    "WarmupPolynomialDecay",
    "build_lr_scheduler",
    "build_optimizer",
    "deepspeed_optimizer_config",
    "deepspeed_optimizer_name",
    "lr_scheduler_factory",
    "torch_optimizer_names",
]
