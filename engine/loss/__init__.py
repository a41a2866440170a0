"""Losses by name (``LOSS_ARCH_REGISTRY``) and the composes that sum them.

Importing this package registers every built-in loss. It depends on torch only: no
DeepSpeed, no trainer, so a loss can be used and tested on its own.
"""

from engine.loss.base import LossInputError, WeightedLoss
from engine.loss.build import LOSS_ARCH_REGISTRY, build_loss
from engine.loss import torch_losses, region, ohem, ssim, perceptual, robust, generalized_ce  # noqa: F401  (registration)
from engine.loss.pipe import LossCompose, LossKeyCompose
# every registered loss by its class name, as the seed's package exported them
from engine.loss.torch_losses import (
    BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, MultiLabelSoftMarginLoss, NLLLoss, SmoothL1Loss,
    SoftMarginLoss, TripletMarginLoss, TripletMarginWithDistanceLoss,
)
from engine.loss.region import BinaryDiceLoss, GeneralizedDiceLoss, IOULoss
from engine.loss.ohem import OnlineHardExampleMiningCELoss
from engine.loss.ssim import SSIMLoss
from engine.loss.perceptual import VggLoss
from engine.loss.robust import CharbonnierLoss, FocalLoss
from engine.loss.generalized_ce import GeneralizedCELoss

__all__ = [
    "LOSS_ARCH_REGISTRY", "LossCompose", "LossInputError", "LossKeyCompose", "WeightedLoss", "build_loss",
    "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "L1Loss", "MSELoss", "MultiLabelSoftMarginLoss", "NLLLoss",
    "SmoothL1Loss", "SoftMarginLoss", "TripletMarginLoss", "TripletMarginWithDistanceLoss",
    "BinaryDiceLoss", "GeneralizedDiceLoss", "IOULoss", "OnlineHardExampleMiningCELoss", "SSIMLoss", "VggLoss",
    "CharbonnierLoss", "FocalLoss", "GeneralizedCELoss",
]
