"""Overlap losses for segmentation: Dice, generalized Dice and IoU (Jaccard).

They score a whole mask at once instead of pixel by pixel, which keeps a small
foreground from being drowned by the background that dominates a pixel-wise loss.
Each is computed per sample, then reduced over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.errors import ConfigError
from engine.loss.base import LossInputError, WeightedLoss, check_reduction, reduce, shape_str
from engine.loss.build import LOSS_ARCH_REGISTRY


class _BinaryOverlapLoss(WeightedLoss):
    """Shared input handling of the binary overlap losses.

    pred: probabilities (or logits with ``from_logits=True``) of shape (N, *); target: a
    mask in [0, 1] of the same shape. A (N, 1, *) pred with a (N, *) mask is accepted,
    the usual shape of a one-channel segmentation head.
    """

    def __init__(self, smooth: float, from_logits: bool, reduction: str, lambda_weight: float) -> None:
        super().__init__(lambda_weight)
        if smooth < 0:
            raise ConfigError(f"smooth must be >= 0, got {smooth!r}")
        self.smooth = float(smooth)
        self.from_logits = bool(from_logits)
        self.reduction = check_reduction(reduction)

    def check_inputs(self, pred: Tensor, target: Tensor) -> None:
        if pred.dim() < 1:
            raise LossInputError("pred must have a batch dimension, got a scalar")
        if target.shape != pred.shape and not (pred.dim() > 1 and pred.shape[1] == 1
                                               and target.shape == pred.shape[:1] + pred.shape[2:]):
            raise LossInputError(
                f"target shape {shape_str(target.shape)} does not fit pred shape {shape_str(pred.shape)}: "
                f"expected the same shape"
            )

    def _flat(self, pred: Tensor, target: Tensor) -> tuple:
        if self.from_logits:
            pred = torch.sigmoid(pred)
        n = pred.shape[0]
        return pred.reshape(n, -1), target.reshape(n, -1).to(pred.dtype)


@LOSS_ARCH_REGISTRY.register()
class BinaryDiceLoss(_BinaryOverlapLoss):
    """``1 - (2·Σpt + smooth) / (Σp^power + Σt^power + smooth)`` per sample.

    Args:
        smooth: added to both sides so empty masks give a loss of 0, not 0/0.
        power: exponent of the denominator terms (2 is the V-Net form).
        from_logits: apply a sigmoid to pred first.
        reduction: over the batch: mean, sum or none.
        lambda_weight: factor of the loss.
    """

    def __init__(self, smooth: float = 1.0, power: float = 1.0, from_logits: bool = False,
                 reduction: str = "mean", lambda_weight: float = 1.0) -> None:
        super().__init__(smooth, from_logits, reduction, lambda_weight)
        self.power = float(power)

    def compute(self, pred: Tensor, target: Tensor) -> Tensor:
        p, t = self._flat(pred, target)
        inter = (p * t).sum(1)
        denom = p.pow(self.power).sum(1) + t.pow(self.power).sum(1)
        return reduce(1.0 - (2.0 * inter + self.smooth) / (denom + self.smooth), self.reduction)


@LOSS_ARCH_REGISTRY.register()
class IOULoss(_BinaryOverlapLoss):
    """Soft Jaccard: ``1 - (Σpt + smooth) / (Σp + Σt - Σpt + smooth)`` per sample.

    Args:
        smooth: added to both sides so empty masks give a loss of 0, not 0/0.
        from_logits: apply a sigmoid to pred first.
        reduction: over the batch: mean, sum or none.
        lambda_weight: factor of the loss.
    """

    def __init__(self, smooth: float = 1.0, from_logits: bool = False, reduction: str = "mean",
                 lambda_weight: float = 1.0) -> None:
        super().__init__(smooth, from_logits, reduction, lambda_weight)

    def compute(self, pred: Tensor, target: Tensor) -> Tensor:
        p, t = self._flat(pred, target)
        inter = (p * t).sum(1)
        union = p.sum(1) + t.sum(1) - inter
        return reduce(1.0 - (inter + self.smooth) / (union + self.smooth), self.reduction)


@LOSS_ARCH_REGISTRY.register()
class GeneralizedDiceLoss(WeightedLoss):
    """Multi-class Dice with class weights ``1 / (pixels of the class)²`` (Sudre et al., 2017).

    The weights keep rare classes from counting for less than frequent ones. A class absent
    from a sample's target would get an infinite weight; it gets the largest finite weight
    of that sample instead, so predicting it where it is absent is still penalised.

    pred: (N, C, *) probabilities (or logits with ``from_logits=True``, softmax over C);
    target: (N, *) integer class indices or (N, C, *) one-hot / probabilities.

    Args:
        smooth: added to numerator and denominator against 0/0.
        from_logits: apply a softmax over the class dimension to pred first.
        reduction: over the batch: mean, sum or none.
        lambda_weight: factor of the loss.
    """

    def __init__(self, smooth: float = 1e-5, from_logits: bool = False, reduction: str = "mean",
                 lambda_weight: float = 1.0) -> None:
        super().__init__(lambda_weight)
        self.smooth = float(smooth)
        self.from_logits = bool(from_logits)
        self.reduction = check_reduction(reduction)

    def check_inputs(self, pred: Tensor, target: Tensor) -> None:
        if pred.dim() < 2:
            raise LossInputError(f"pred shape {shape_str(pred.shape)}: expected (N, C, *) class scores")
        indices = pred.shape[:1] + pred.shape[2:]
        if target.shape == indices and not target.is_floating_point():
            return
        if target.shape == pred.shape:
            return
        raise LossInputError(
            f"target shape {shape_str(target.shape)} does not fit pred shape {shape_str(pred.shape)}: "
            f"expected integer class indices of shape {shape_str(indices)} or one-hot of shape {shape_str(pred.shape)}"
        )

    def compute(self, pred: Tensor, target: Tensor) -> Tensor:
        n, c = pred.shape[:2]
        if self.from_logits:
            pred = pred.softmax(1)
        if target.shape != pred.shape:
            target = F.one_hot(target.long(), c).movedim(-1, 1)
        p = pred.reshape(n, c, -1)
        t = target.reshape(n, c, -1).to(p.dtype)
        counts = t.sum(2)                                   # (N, C)
        weights = 1.0 / counts.pow(2)
        finite = torch.isfinite(weights)
        fallback = torch.where(finite, weights, torch.zeros_like(weights)).amax(1, keepdim=True)
        fallback = torch.where(fallback > 0, fallback, torch.ones_like(fallback))
        weights = torch.where(finite, weights, fallback).detach()
        inter = (weights * (p * t).sum(2)).sum(1)
        denom = (weights * (p.sum(2) + counts)).sum(1)
        return reduce(1.0 - (2.0 * inter + self.smooth) / (denom + self.smooth), self.reduction)
