"""The seed's ``GeneralizedCELoss``: one loss for softmax or sigmoid cross-entropy of segmentation maps.

Segmentation configs of the seed switch a head between multi-class (softmax) and
per-class binary (sigmoid) training with one flag, ``apply_sigmoid``, and keep the same
loss entry. Both modes take ``ignore_index``: pixels with that label count nowhere, so
the mean is over the counted pixels only.

Where the seed differs, engine follows the standard definitions: the seed's sigmoid mode
applied a sigmoid before ``binary_cross_entropy_with_logits`` (a sigmoid twice), and its
mean divided by every pixel, ignored ones included.
"""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor

from engine.loss.base import LossInputError, WeightedLoss, check_reduction, shape_str
from engine.loss.build import LOSS_ARCH_REGISTRY
from engine.loss.dense import dense_target, mean_over_counted, target_form


@LOSS_ARCH_REGISTRY.register()
class GeneralizedCELoss(WeightedLoss):
    """Softmax cross-entropy (default) or sigmoid binary cross-entropy, with ignored pixels.

    ``apply_sigmoid=False``: pred (N, C, *) logits, target (N, *) or (N, 1, *) class
    indices.
    ``apply_sigmoid=True``: pred logits; target of pred's shape (0/1 per element), or
    class indices (N, *) / (N, 1, *), one-hot encoded for a C-channel pred (a 0/1 mask
    for one channel). Each element is an independent sigmoid.

    Args:
        apply_sigmoid: sigmoid binary cross-entropy instead of softmax cross-entropy.
        ignore_index: label of pixels that count nowhere (e.g. 255), or None.
        reduction: mean (over counted pixels), sum or none (ignored pixels are 0).
        lambda_weight: factor of the loss.
    """

    def __init__(self, apply_sigmoid: bool = False, ignore_index: Optional[int] = None, reduction: str = "mean",
                 lambda_weight: float = 1.0) -> None:
        super().__init__(lambda_weight)
        self.apply_sigmoid = bool(apply_sigmoid)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.reduction = check_reduction(reduction)

    def check_inputs(self, pred: Tensor, target: Tensor) -> None:
        if pred.dim() < 2:
            raise LossInputError(f"pred shape {shape_str(pred.shape)}: expected (N, C, *) logits")
        form = target_form(pred, target)
        if not self.apply_sigmoid and form != "indices":
            raise LossInputError(
                f"target shape {shape_str(target.shape)} does not fit pred shape {shape_str(pred.shape)}: softmax "
                f"cross-entropy expects class indices of shape {shape_str(pred.shape[:1] + pred.shape[2:])} "
                "(use CrossEntropyLoss for probability targets, or apply_sigmoid=True for per-element labels)"
            )

    def compute(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.apply_sigmoid:
            dense, valid = dense_target(pred, target, self.ignore_index)
            losses = F.binary_cross_entropy_with_logits(pred, dense, reduction="none")
            return mean_over_counted(losses, valid, self.reduction)
        labels = target.reshape(pred.shape[:1] + pred.shape[2:]).long()
        ignore = -100 if self.ignore_index is None else self.ignore_index
        losses = F.cross_entropy(pred, labels, ignore_index=ignore, reduction="none")
        counted = None if self.ignore_index is None else labels != self.ignore_index
        return mean_over_counted(losses, counted, self.reduction)

    def extra_repr(self) -> str:
        return (f"apply_sigmoid={self.apply_sigmoid}, ignore_index={self.ignore_index}, "
                f"reduction={self.reduction}, {super().extra_repr()}")
