"""Dice, generalized Dice, IoU and OHEM against small cases worked out by hand."""

import math

import pytest
import torch

from engine.errors import ConfigError
from engine.loss import LossInputError, build_loss

PRED = torch.tensor([[0.5, 1.0, 0.0, 0.5]])
MASK = torch.tensor([[1.0, 1.0, 0.0, 0.0]])


def _loss(name, **params):
    return build_loss(name, params, where="LOSS.k[0]")


def test_binary_dice_by_hand():
    # intersection 1.5; sum(p) + sum(t) = 2 + 2
    assert _loss("BinaryDiceLoss")(PRED, MASK).item() == pytest.approx(1 - (2 * 1.5 + 1) / (4 + 1))
    assert _loss("BinaryDiceLoss", smooth=0.0)(PRED, MASK).item() == pytest.approx(1 - 3 / 4)
    # power 2: sum(p²) = 0.25 + 1 + 0 + 0.25 = 1.5, sum(t²) = 2
    assert _loss("BinaryDiceLoss", power=2)(PRED, MASK).item() == pytest.approx(1 - 4 / 4.5)
    assert _loss("BinaryDiceLoss", lambda_weight=3.0)(PRED, MASK).item() == pytest.approx(3 * 0.2)


def test_binary_dice_per_sample_reduction_and_logits():
    pred = torch.stack([PRED[0], MASK[0]])
    mask = torch.stack([MASK[0], MASK[0]])
    per_sample = _loss("BinaryDiceLoss", reduction="none")(pred, mask)
    torch.testing.assert_close(per_sample, torch.tensor([0.2, 0.0]))
    assert _loss("BinaryDiceLoss", reduction="sum")(pred, mask).item() == pytest.approx(0.2)
    logits = torch.logit(PRED.clamp(1e-4, 1 - 1e-4))
    assert _loss("BinaryDiceLoss", from_logits=True)(logits, MASK).item() == pytest.approx(0.2, abs=1e-4)


def test_binary_dice_accepts_one_channel_pred_with_plain_mask():
    pred = PRED.reshape(1, 1, 2, 2)
    assert _loss("BinaryDiceLoss")(pred, MASK.reshape(1, 2, 2)).item() == pytest.approx(0.2)
    with pytest.raises(LossInputError, match=r"target shape \(1, 3\) does not fit pred shape \(1, 4\)"):
        _loss("BinaryDiceLoss")(PRED, torch.zeros(1, 3))


def test_iou_by_hand():
    # intersection 1.5, union 2 + 2 - 1.5 = 2.5
    assert _loss("IOULoss")(PRED, MASK).item() == pytest.approx(1 - 2.5 / 3.5)
    assert _loss("IOULoss", smooth=0.0)(PRED, MASK).item() == pytest.approx(1 - 1.5 / 2.5)
    assert _loss("IOULoss")(MASK, MASK).item() == pytest.approx(0.0)


def test_generalized_dice_by_hand():
    # two classes over four pixels; target = [0, 0, 0, 1] -> class pixel counts 3 and 1
    pred = torch.tensor([[[0.9, 0.8, 0.3, 0.1], [0.1, 0.2, 0.7, 0.9]]])
    target = torch.tensor([[0, 0, 0, 1]])
    w0, w1 = 1 / 9, 1.0
    inter = w0 * (0.9 + 0.8 + 0.3) + w1 * 0.9
    denom = w0 * (2.1 + 3) + w1 * (1.9 + 1)
    expected = 1 - 2 * inter / denom
    loss = _loss("GeneralizedDiceLoss", smooth=0.0)
    assert loss(pred, target).item() == pytest.approx(expected, rel=1e-5)
    one_hot = torch.tensor([[[1.0, 1, 1, 0], [0, 0, 0, 1]]])
    assert loss(pred, one_hot).item() == pytest.approx(expected, rel=1e-5)
    assert _loss("GeneralizedDiceLoss", smooth=0.0, from_logits=True)(pred.log(), target).item() == \
        pytest.approx(expected, rel=1e-5)


def test_generalized_dice_class_absent_from_target_gets_largest_finite_weight():
    pred = torch.tensor([[[0.75] * 4, [0.25] * 4]])
    target = torch.zeros(1, 4, dtype=torch.long)
    # counts 4 and 0: both weights 1/16; inter = 3/16; denom = (3 + 4)/16 + (1 + 0)/16
    assert _loss("GeneralizedDiceLoss", smooth=0.0)(pred, target).item() == pytest.approx(1 - 6 / 8)
    with pytest.raises(LossInputError, match=r"class indices of shape \(1, 4\)"):
        _loss("GeneralizedDiceLoss")(pred, torch.zeros(1, 5, dtype=torch.long))


def _ohem_case():
    # four pixels, two classes; pixel probabilities of the true class: 0.5, 0.9, 0.2, (ignored)
    logits = torch.tensor([[0.0, math.log(9), math.log(4), 0.0],
                           [0.0, 0.0, 0.0, 0.0]]).unsqueeze(0)      # (1, 2, 4)
    target = torch.tensor([[0, 0, 1, 255]])
    return logits, target


def test_ohem_keeps_pixels_below_thresh():
    logits, target = _ohem_case()
    loss = _loss("OnlineHardExampleMiningCELoss", thresh=0.7, min_kept=1)
    # hard: p=0.5 (ln 2) and p=0.2 (ln 5); the p=0.9 pixel is easy, the last ignored
    assert loss(logits, target).item() == pytest.approx((math.log(2) + math.log(5)) / 2, rel=1e-6)


def test_ohem_min_kept_tops_up_with_the_hardest():
    logits, target = _ohem_case()
    three = _loss("OnlineHardExampleMiningCELoss", thresh=0.7, min_kept=3)
    expected = (math.log(2) + math.log(10 / 9) + math.log(5)) / 3
    assert three(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # nothing below 0.1: min_kept=1 keeps the single hardest pixel (p=0.2)
    one = _loss("OnlineHardExampleMiningCELoss", thresh=0.1, min_kept=1)
    assert one(logits, target).item() == pytest.approx(math.log(5), rel=1e-6)


def test_ohem_all_ignored_is_zero_with_graph():
    logits, _ = _ohem_case()
    logits.requires_grad_(True)
    out = _loss("OnlineHardExampleMiningCELoss")(logits, torch.full((1, 4), 255))
    assert out.item() == 0.0 and out.requires_grad


def test_ohem_bad_config_and_shapes():
    with pytest.raises(ConfigError, match=r"LOSS\.k\[0\].*thresh must be a probability"):
        _loss("OnlineHardExampleMiningCELoss", thresh=1.5)
    logits, _ = _ohem_case()
    with pytest.raises(LossInputError, match=r"class indices of shape \(1, 4\)"):
        _loss("OnlineHardExampleMiningCELoss")(logits, torch.zeros(1, 2, 4))
