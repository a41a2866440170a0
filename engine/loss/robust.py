"""Losses that reshape the penalty of plain ones: focal (down-weights easy examples) and
Charbonnier (a differentiable L1 for image restoration)."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.errors import ConfigError
from engine.loss.base import (
    WeightedLoss,
    as_tensor,
    check_reduction,
    drop_label_channel,
    expect_class_target,
    expect_same_shape,
    reduce,
)
from engine.loss.build import LOSS_ARCH_REGISTRY
from engine.loss.dense import mean_over_counted


@LOSS_ARCH_REGISTRY.register()
class FocalLoss(WeightedLoss):
    """Cross-entropy scaled by ``(1 - p_t)^gamma`` (Lin et al., 2017).

    Confident, correct predictions (p_t near 1) contribute almost nothing, so the many
    easy examples of an imbalanced problem stop dominating the gradient.

    ``mode='binary'``: pred are logits of any shape, target the same shape with values in
    [0, 1] (each element an independent sigmoid, as in RetinaNet).
    ``mode='multiclass'``: pred (N, C, *) logits, target (N, *) or (N, 1, *) class indices (softmax).

    Args:
        gamma: focusing exponent; 0 gives back cross-entropy.
        alpha: binary: weight of the positives in [0, 1], negatives get ``1 - alpha``
            (RetinaNet uses 0.25); multiclass: one weight per class. None: no weighting.
        mode: ``'binary'`` or ``'multiclass'``.
        ignore_index: target value that counts for nothing (binary: per element; multiclass:
            per pixel); the mean is over the counted ones.
        reduction: mean (over counted elements), sum or none.
        lambda_weight: factor of the loss.
    """

    def __init__(self, gamma: float = 2.0, alpha: Optional[Union[float, Sequence[float]]] = None,
                 mode: str = "binary", ignore_index: int = -100, reduction: str = "mean",
                 lambda_weight: float = 1.0) -> None:
        super().__init__(lambda_weight)
        if mode not in ("binary", "multiclass"):
            raise ConfigError(f"mode must be 'binary' or 'multiclass', got {mode!r}")
        if gamma < 0:
            raise ConfigError(f"gamma must be >= 0, got {gamma!r}")
        if mode == "binary" and alpha is not None and not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
            raise ConfigError(f"binary mode: alpha must be None or a number in [0, 1], got {alpha!r}")
        if mode == "multiclass" and isinstance(alpha, (int, float)):
            raise ConfigError(f"multiclass mode: alpha must be None or one weight per class (a list), got {alpha!r}")
        self.gamma = float(gamma)
        self.mode = mode
        self.ignore_index = int(ignore_index)
        self.reduction = check_reduction(reduction)
        self.alpha = float(alpha) if mode == "binary" and alpha is not None else None
        self.register_buffer("class_weight", as_tensor(alpha, "alpha") if mode == "multiclass" else None)

    def check_inputs(self, pred: Tensor, target: Tensor) -> None:
        if self.mode == "binary":
            expect_same_shape(pred, target, names=self.arguments)
        else:
            expect_class_target(pred, drop_label_channel(pred, target), allow_probabilities=False)

    def compute(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.mode == "binary":
            counted = target != self.ignore_index
            target = torch.where(counted, target, torch.zeros_like(target)).to(pred.dtype)
            ce = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
            p = torch.sigmoid(pred)
            p_t = p * target + (1.0 - p) * (1.0 - target)
            loss = ce * (1.0 - p_t).pow(self.gamma)
            if self.alpha is not None:
                loss = loss * (self.alpha * target + (1.0 - self.alpha) * (1.0 - target))
            return mean_over_counted(loss, counted, self.reduction)
        target = drop_label_channel(pred, target).long()
        valid = target != self.ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target)).unsqueeze(1)
        log_p_t = pred.log_softmax(1).gather(1, safe).squeeze(1)
        loss = -log_p_t * (1.0 - log_p_t.exp()).pow(self.gamma)
        if self.class_weight is not None:
            loss = loss * self.class_weight[safe.squeeze(1)]
        loss = loss * valid
        if self.reduction == "mean":
            return loss.sum() / valid.sum().clamp(min=1)
        return reduce(loss, self.reduction)


@LOSS_ARCH_REGISTRY.register()
class CharbonnierLoss(WeightedLoss):
    """``sqrt((pred - target)² + eps²)``: L1 away from 0, smooth at 0.

    L1 keeps restored images sharper than L2 but its gradient jumps at 0; Charbonnier
    keeps the L1 behaviour with a gradient that goes to 0 smoothly.

    Args:
        eps: the smoothing scale, in units of the data.
        reduction: mean, sum or none.
        lambda_weight: factor of the loss.
    """

    def __init__(self, eps: float = 1e-3, reduction: str = "mean", lambda_weight: float = 1.0) -> None:
        super().__init__(lambda_weight)
        if eps <= 0:
            raise ConfigError(f"eps must be > 0, got {eps!r}")
        self.eps = float(eps)
        self.reduction = check_reduction(reduction)

    def compute(self, pred: Tensor, target: Tensor) -> Tensor:
        return reduce(torch.sqrt((pred - target).pow(2) + self.eps ** 2), self.reduction)
