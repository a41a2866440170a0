"""Overlap losses for segmentation: Dice, generalized Dice and IoU (Jaccard).

They score a whole mask at once instead of pixel by pixel, which keeps a small
foreground from being drowned by the background that dominates a pixel-wise loss.
Each is computed per sample, then reduced over the batch. Every one takes
``ignore_index``: pixels with that label are left out of the intersection, the sums and
the mean over the batch (a sample with no counted pixel counts nowhere), and the seed's
spellings of the activation switch (``apply_sigmoid``; ``apply_softmax`` for generalized
Dice) beside engine's ``from_logits``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from engine.errors import ConfigError
from engine.loss.base import LossInputError, WeightedLoss, check_reduction, shape_str
from engine.loss.build import LOSS_ARCH_REGISTRY
from engine.loss.dense import (
    activate,
    choose_activation,
    dense_target,
    expect_probabilities,
    masked,
    mean_over_counted,
    target_form,
)


class _OverlapLoss(WeightedLoss):
    """Shared input handling: activation, dense target, ignored pixels, per-sample sums.

    pred: probabilities (or logits, with an activation) of shape (N, *), or (N, C, *)
    scores; target: pred's shape, or labels (N, *) / (N, 1, *) (a 0/1 mask for one
    channel, class indices for C channels), the usual shapes of a segmentation head.
    """

    def __init__(self, smooth: float, activation: Optional[str], ignore_index: Optional[int], eps: float,
                 reduction: str, lambda_weight: float) -> None:
        super().__init__(lambda_weight)
        if smooth < 0 or eps < 0:
            raise ConfigError(f"smooth and eps must be >= 0, got smooth={smooth!r}, eps={eps!r}")
        self.smooth = float(smooth)
        self.eps = float(eps)
        self.activation = activation
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.reduction = check_reduction(reduction)
        self._checked_range = activation is not None

    def check_inputs(self, pred: Tensor, target: Tensor) -> None:
        target_form(pred, target)

    def _dense(self, pred: Tensor, target: Tensor) -> tuple:
        """(p, t, counted): activated pred and dense target in pred's shape, ignored pixels zeroed in both,
        and which samples have a counted pixel (None: all)."""
        if not self._checked_range:  # the first batch shows whether logits came without an activation
            expect_probabilities(pred, type(self).__name__)
            self._checked_range = True
        pred = activate(pred, self.activation)
        dense, valid = dense_target(pred, target, self.ignore_index)
        counted = None if valid is None else valid.reshape(pred.shape[0], -1).any(1)
        return masked(pred, valid), masked(dense, valid), counted

    def _prepare(self, pred: Tensor, target: Tensor) -> tuple:
        """As ``_dense``, with p and t flattened per sample to (N, -1)."""
        p, t, counted = self._dense(pred, target)
        n = p.shape[0]
        return p.reshape(n, -1), t.reshape(n, -1), counted

    def _reduce(self, losses: Tensor, counted: Optional[Tensor]) -> Tensor:
        return mean_over_counted(losses, counted, self.reduction)

    def extra_repr(self) -> str:
        return (f"smooth={self.smooth}, activation={self.activation}, ignore_index={self.ignore_index}, "
                f"reduction={self.reduction}, {super().extra_repr()}")


@LOSS_ARCH_REGISTRY.register()
class BinaryDiceLoss(_OverlapLoss):
    """``1 - (2·Σpt + smooth) / (Σp^power + Σt^power + smooth + eps)`` per sample.

    Args:
        smooth: added to both sides so empty masks give a loss of 0, not 0/0.
        power: exponent of the denominator terms (2 is the V-Net form).
        from_logits: apply a sigmoid to pred first.
        reduction: over the batch: mean, sum or none.
        lambda_weight: factor of the loss.
        apply_sigmoid: the seed's name of ``from_logits`` (same meaning).
        ignore_index: label of pixels that count nowhere (e.g. 255), or None.
        eps: the seed's extra term of the denominator against 0/0 when ``smooth`` is 0.
    """

    def __init__(self, smooth: float = 1.0, power: float = 1.0, from_logits: Optional[bool] = None,
                 reduction: str = "mean", lambda_weight: float = 1.0, apply_sigmoid: Optional[bool] = None,
                 ignore_index: Optional[int] = None, eps: float = 0.0) -> None:
        activation = choose_activation(from_logits, apply_sigmoid, seed_name="apply_sigmoid",
                                       logits_activation="sigmoid", seed_true="sigmoid", seed_false=None)
        super().__init__(smooth, activation, ignore_index, eps, reduction, lambda_weight)
        self.power = float(power)

    def compute(self, pred: Tensor, target: Tensor) -> Tensor:
        p, t, counted = self._prepare(pred, target)
        inter = (p * t).sum(1)
        denom = p.pow(self.power).sum(1) + t.pow(self.power).sum(1)
        return self._reduce(1.0 - (2.0 * inter + self.smooth) / (denom + self.smooth + self.eps), counted)


@LOSS_ARCH_REGISTRY.register()
class IOULoss(_OverlapLoss):
    """Soft Jaccard: ``1 - (Σpt + smooth) / (Σp + Σt - Σpt + smooth)`` per sample.

    Args:
        smooth: added to both sides so empty masks give a loss of 0, not 0/0.
        from_logits: apply a sigmoid to pred first.
        reduction: over the batch: mean, sum or none.
        lambda_weight: factor of the loss.
        apply_sigmoid: the seed's switch: true applies a sigmoid, false a softmax over the
            class dimension (the seed's multi-class IoU with class-index targets).
        ignore_index: label of pixels that count nowhere (e.g. 255), or None.
    """

    def __init__(self, smooth: float = 1.0, from_logits: Optional[bool] = None, reduction: str = "mean",
                 lambda_weight: float = 1.0, apply_sigmoid: Optional[bool] = None,
                 ignore_index: Optional[int] = None) -> None:
        activation = choose_activation(from_logits, apply_sigmoid, seed_name="apply_sigmoid",
                                       logits_activation="sigmoid", seed_true="sigmoid", seed_false="softmax")
        super().__init__(smooth, activation, ignore_index, 0.0, reduction, lambda_weight)

    def compute(self, pred: Tensor, target: Tensor) -> Tensor:
        p, t, counted = self._prepare(pred, target)
        inter = (p * t).sum(1)
        union = p.sum(1) + t.sum(1) - inter
        return self._reduce(1.0 - (inter + self.smooth) / (union + self.smooth), counted)


@LOSS_ARCH_REGISTRY.register()
class GeneralizedDiceLoss(_OverlapLoss):
    """Multi-class Dice with class weights ``1 / (pixels of the class)²`` (Sudre et al., 2017).

    The weights keep rare classes from counting for less than frequent ones. A class absent
    from a sample's target would get an infinite weight; it gets the largest finite weight
    of that sample instead, so predicting it where it is absent is still penalised.
    Ignored pixels count in no class.

    pred: (N, C, *) probabilities (or logits with ``from_logits=True``, softmax over C);
    target: (N, *) / (N, 1, *) class indices or (N, C, *) one-hot / probabilities.

    Args:
        smooth: added to numerator and denominator against 0/0.
        from_logits: apply a softmax over the class dimension to pred first.
        reduction: over the batch: mean, sum or none.
        lambda_weight: factor of the loss.
        apply_softmax: the seed's name of ``from_logits`` (same meaning).
        ignore_index: label of pixels that count nowhere (e.g. 255), or None.
        eps: the seed's extra term of the denominator.
    """

    def __init__(self, smooth: float = 1e-5, from_logits: Optional[bool] = None, reduction: str = "mean",
                 lambda_weight: float = 1.0, apply_softmax: Optional[bool] = None,
                 ignore_index: Optional[int] = None, eps: float = 0.0) -> None:
        activation = choose_activation(from_logits, apply_softmax, seed_name="apply_softmax",
                                       logits_activation="softmax", seed_true="softmax", seed_false=None)
        super().__init__(smooth, activation, ignore_index, eps, reduction, lambda_weight)

    def check_inputs(self, pred: Tensor, target: Tensor) -> None:
        if pred.dim() < 2:
            raise LossInputError(f"pred shape {shape_str(pred.shape)}: expected (N, C, *) class scores")
        target_form(pred, target)

    def compute(self, pred: Tensor, target: Tensor) -> Tensor:
        n, c = pred.shape[:2]
        p, t, counted = self._dense(pred, target)
        p, t = p.reshape(n, c, -1), t.reshape(n, c, -1)
        counts = t.sum(2)                                   # (N, C)
        weights = 1.0 / counts.pow(2)
        finite = torch.isfinite(weights)
        fallback = torch.where(finite, weights, torch.zeros_like(weights)).amax(1, keepdim=True)
        fallback = torch.where(fallback > 0, fallback, torch.ones_like(fallback))
        weights = torch.where(finite, weights, fallback).detach()
        inter = (weights * (p * t).sum(2)).sum(1)
        denom = (weights * (p.sum(2) + counts)).sum(1)
        return self._reduce(1.0 - (2.0 * inter + self.smooth) / (denom + self.smooth + self.eps), counted)
