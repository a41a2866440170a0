"""Segmentation targets in the prediction's shape, with the mask of pixels that count.

Region and structure losses (Dice, IoU, SSIM, binary cross-entropy) compare a prediction
of shape (N, C, *) with a target given either in that same shape (a mask, one-hot or
probabilities) or as class indices (N, *) / (N, 1, *), the form segmentation data sets
store. This module turns either form into one dense float target plus a ``valid`` mask:
pixels whose label is ``ignore_index`` (255 is the usual "void" label) are zero in the
target and False in the mask, and each loss leaves them out of every sum and mean.

Nothing here synchronises with the device: shapes decide the form, never values.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.errors import ConfigError
from engine.loss.base import LossInputError, shape_str

def target_form(pred: Tensor, target: Tensor) -> str:
    """``'dense'`` (same shape as pred) or ``'indices'`` ((N, *) or (N, 1, *) labels of a (N, C, *) pred).

    Raises:
        LossInputError: the shapes fit neither form; the message names both.
    """
    if target.shape == pred.shape:
        return "dense"
    if pred.dim() >= 2:
        spatial = pred.shape[:1] + pred.shape[2:]
        if target.shape == spatial or (target.dim() == pred.dim() and target.shape[1] == 1
                                       and target.shape[:1] + target.shape[2:] == spatial):
            return "indices"
    wanted = f"the same shape, or class indices of shape {shape_str(pred.shape[:1] + pred.shape[2:])}" \
        if pred.dim() >= 2 else "the same shape"
    raise LossInputError(
        f"target shape {shape_str(target.shape)} does not fit pred shape {shape_str(pred.shape)}: expected {wanted}"
    )


def dense_target(pred: Tensor, target: Tensor, ignore_index: Optional[int]) -> Tuple[Tensor, Optional[Tensor]]:
    """The target in pred's shape and dtype, and the mask of counted elements (None: all count).

    Args:
        pred: (N, C, *) scores, or any shape for a same-shape target.
        target: pred's shape, or labels (N, *) / (N, 1, *): a 0/1 mask when C is 1, class
            indices in [0, C) otherwise (any dtype; labels are whole numbers).
        ignore_index: label of the elements that count nowhere, or None.

    Returns:
        ``(dense, valid)``: ``dense`` is zero where the label is ignored; ``valid`` is a
        bool tensor of pred's shape (an ignored pixel is invalid in every channel).
    """
    if target_form(pred, target) == "dense":
        if ignore_index is None:
            return target.to(pred.dtype), None
        valid = target != ignore_index
        return torch.where(valid, target, torch.zeros_like(target)).to(pred.dtype), valid
    labels = target.reshape(pred.shape[:1] + pred.shape[2:])
    keep = None if ignore_index is None else labels != ignore_index
    if keep is not None:
        labels = torch.where(keep, labels, torch.zeros_like(labels))
    if pred.shape[1] == 1:
        dense = labels.unsqueeze(1).to(pred.dtype)
    else:
        dense = F.one_hot(labels.long(), pred.shape[1]).movedim(-1, 1).to(pred.dtype)
    valid = None if keep is None else keep.unsqueeze(1).expand(pred.shape)
    return dense, valid


def activate(pred: Tensor, activation: Optional[str]) -> Tensor:
    """``pred`` through the named activation (softmax over the class dimension 1)."""
    if activation == "sigmoid":
        return torch.sigmoid(pred)
    if activation == "softmax":
        return pred.softmax(1)
    return pred


def masked(values: Tensor, valid: Optional[Tensor]) -> Tensor:
    """``values`` with the invalid elements zeroed (multiplication keeps their gradient at 0)."""
    return values if valid is None else values * valid.to(values.dtype)


def mean_over_counted(losses: Tensor, counted: Optional[Tensor], reduction: str) -> Tensor:
    """Reduce per-sample (or per-element) ``losses``, leaving out the ones that count nowhere.

    Args:
        losses: the values to reduce.
        counted: bool of losses' shape, or None when all count.
        reduction: ``mean`` (over the counted ones; 0 with the graph kept when none
            counts), ``sum`` or ``none`` (uncounted ones are 0).

    Returns:
        The reduced loss.
    """
    if counted is not None:
        losses = losses * counted.to(losses.dtype)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if counted is None:
        return losses.mean()
    return losses.sum() / counted.sum().clamp(min=1).to(losses.dtype)


def choose_activation(from_logits: Optional[bool], seed_flag: Optional[bool], *, seed_name: str,
                      logits_activation: str, seed_true: Optional[str], seed_false: Optional[str]) -> Optional[str]:
    """The activation a loss applies, from engine's ``from_logits`` or the seed's spelling.

    The seed's region and SSIM losses name the switch ``apply_sigmoid`` (``apply_softmax``
    for generalized Dice), and in IoU and SSIM ``apply_sigmoid=False`` meant a softmax,
    not none; both spellings are accepted with their own meaning.

    Args:
        from_logits: engine's switch, or None when not given.
        seed_flag: the seed's switch, or None when not given.
        seed_name: the seed's parameter name, for the error message.
        logits_activation: what ``from_logits=True`` applies.
        seed_true: what the seed's switch applies when true.
        seed_false: what it applies when false.

    Returns:
        ``None``, ``'sigmoid'`` or ``'softmax'``.

    Raises:
        ConfigError: both spellings given and they disagree.
    """
    engine_choice = None if from_logits is None else (logits_activation if from_logits else None)
    seed_choice = None if seed_flag is None else (seed_true if seed_flag else seed_false)
    if from_logits is not None and seed_flag is not None and engine_choice != seed_choice:
        raise ConfigError(f"from_logits={from_logits!r} and {seed_name}={seed_flag!r} disagree; set only one of them")
    return seed_choice if seed_flag is not None else engine_choice


def expect_probabilities(pred: Tensor, loss_name: str) -> None:
    """Raise when a loss that takes probabilities gets values outside [0, 1] (it was given logits).

    One host synchronisation; losses call it on their first batch only, which is when a
    missing ``from_logits`` shows.
    """
    low, high = float(pred.detach().min()), float(pred.detach().max())
    if low < 0.0 or high > 1.0:
        raise LossInputError(
            f"{loss_name}: pred has values outside [0, 1] (min {low:.4g}, max {high:.4g}), so it is not "
            "probabilities; if the network gives logits, set from_logits=True (TrainFramework's apply_sigmoid=True, "
            "its default there)"
        )
