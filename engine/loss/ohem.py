"""Cross-entropy over the hard pixels only (online hard example mining, OHEM).

In segmentation most pixels are easy after a few epochs; averaging over all of them
shrinks the gradient of the few that are still wrong. OHEM averages over the pixels whose
probability of the true class is below ``thresh``, and over at least the ``min_kept``
hardest pixels so a nearly-solved batch still trains.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch.nn.functional as F
from torch import Tensor

from engine.errors import ConfigError
from engine.loss.base import WeightedLoss, as_tensor, drop_label_channel, expect_class_target
from engine.loss.build import LOSS_ARCH_REGISTRY


@LOSS_ARCH_REGISTRY.register()
class OnlineHardExampleMiningCELoss(WeightedLoss):
    """Mean cross-entropy of the hard pixels.

    pred: (N, C, *) logits; target: (N, *) or (N, 1, *) integer class indices.

    Args:
        thresh: a pixel is hard when the softmax probability of its true class is below
            this (its cross-entropy above ``-log(thresh)``).
        min_kept: keep at least this many pixels per batch (the hardest ones) when fewer
            are hard; 0 keeps only the hard ones.
        ignore_index: target value of pixels that count for nothing (255: the usual
            "void" label of segmentation data sets).
        weight: optional per-class weights (length C) applied to each pixel's loss.
        lambda_weight: factor of the loss.
    """

    arguments = ("pred", "target")

    def __init__(self, thresh: float = 0.7, min_kept: int = 256, ignore_index: int = 255,
                 weight: Optional[Sequence[float]] = None, lambda_weight: float = 1.0) -> None:
        super().__init__(lambda_weight)
        if not 0.0 < thresh <= 1.0:
            raise ConfigError(f"thresh must be a probability in (0, 1], got {thresh!r}")
        if int(min_kept) < 0:
            raise ConfigError(f"min_kept must be >= 0, got {min_kept!r}")
        self.loss_thresh = -math.log(thresh)
        self.min_kept = int(min_kept)
        self.ignore_index = int(ignore_index)
        self.register_buffer("weight", as_tensor(weight, "weight"))

    def check_inputs(self, pred: Tensor, target: Tensor) -> None:
        expect_class_target(pred, drop_label_channel(pred, target), allow_probabilities=False)

    def compute(self, pred: Tensor, target: Tensor) -> Tensor:
        target = drop_label_channel(pred, target)
        losses = F.cross_entropy(pred, target.long(), weight=self.weight,
                                 ignore_index=self.ignore_index, reduction="none").flatten()
        losses = losses[target.flatten() != self.ignore_index]
        if losses.numel() == 0:  # every pixel ignored: a zero that keeps the graph
            return pred.sum() * 0.0
        # Boolean indexing makes the kept count data-dependent: one host sync per call.
        hard = losses[losses > self.loss_thresh]
        if hard.numel() < self.min_kept:
            hard = losses.topk(min(self.min_kept, losses.numel())).values
        if hard.numel() == 0:
            return pred.sum() * 0.0
        return hard.mean()

    def extra_repr(self) -> str:
        return (f"thresh={math.exp(-self.loss_thresh):.4g}, min_kept={self.min_kept}, "
                f"ignore_index={self.ignore_index}, {super().extra_repr()}")
