"""Losses by name (``LOSS_ARCH_REGISTRY``) and the composes that sum them.

Importing this package registers every built-in loss. It depends on torch only: no
DeepSpeed, no trainer, so a loss can be used and tested on its own.
"""

from engine.loss.base import LossInputError, WeightedLoss
from engine.loss.build import LOSS_ARCH_REGISTRY, build_loss
from engine.loss import torch_losses, region, ohem, ssim, perceptual, robust, generalized_ce  # noqa: F401  (registration)
from engine.loss.pipe import LossCompose, LossKeyCompose

__all__ = ["LOSS_ARCH_REGISTRY", "LossCompose", "LossInputError", "LossKeyCompose", "WeightedLoss", "build_loss"]
