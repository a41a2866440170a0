"""``ignore_index`` on every segmentation loss, the seed's ``GeneralizedCELoss`` and its ``apply_sigmoid`` spellings.

The standard meaning of an ignored pixel: it counts nowhere. Each test compares against
the loss computed on the counted pixels alone, or checks that nothing at an ignored pixel
(its prediction, its gradient) can change the result.
"""

import pytest
import torch
import torch.nn.functional as F

from engine.errors import ConfigError
from engine.loss import LossInputError, LossKeyCompose
from engine.loss.build import LOSS_ARCH_REGISTRY

IGNORE = 255


def _loss(name, **params):
    return LOSS_ARCH_REGISTRY.get(name)(**params)


def _segmentation(classes=3, n=2, h=12, w=12, seed=0):
    """Logits (N, C, H, W), labels (N, H, W) with about a quarter of the pixels ignored."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, h, w, generator=gen)
    labels = torch.randint(0, classes, (n, h, w), generator=gen)
    labels[torch.rand(n, h, w, generator=gen) < 0.25] = IGNORE
    return logits, labels


def _with_ignored_changed(pred, labels):
    """pred with wild values at the ignored pixels: a loss that ignores them must not notice."""
    changed = pred.clone()
    ignored = (labels == IGNORE).unsqueeze(1).expand_as(pred)
    changed[ignored] = 7.0
    return changed


CLASS_LOSSES = [
    ("CrossEntropyLoss", dict(ignore_index=IGNORE)),
    ("GeneralizedCELoss", dict(ignore_index=IGNORE)),
    ("GeneralizedCELoss", dict(ignore_index=IGNORE, apply_sigmoid=True)),
    ("OnlineHardExampleMiningCELoss", dict(ignore_index=IGNORE, min_kept=10)),
    ("FocalLoss", dict(ignore_index=IGNORE, mode="multiclass")),
    ("GeneralizedDiceLoss", dict(ignore_index=IGNORE, from_logits=True)),
    ("BinaryDiceLoss", dict(ignore_index=IGNORE, from_logits=True)),
    ("IOULoss", dict(ignore_index=IGNORE, apply_sigmoid=False)),
    ("SSIMLoss", dict(ignore_index=IGNORE, apply_sigmoid=False, window_size=5)),
]


@pytest.mark.parametrize("name,params", CLASS_LOSSES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CLASS_LOSSES)])
def test_ignored_pixels_change_neither_value_nor_gradient(name, params):
    logits, labels = _segmentation()
    loss = _loss(name, **params)
    pred = logits.clone().requires_grad_(True)
    value = loss(pred, labels)
    value.backward()
    ignored = (labels == IGNORE).unsqueeze(1).expand_as(pred)
    assert torch.isfinite(value)
    assert pred.grad[ignored].abs().max() == 0
    assert pred.grad[~ignored].abs().max() > 0
    torch.testing.assert_close(loss(_with_ignored_changed(logits, labels), labels), value.detach())


def test_cross_entropy_family_means_over_counted_pixels_only():
    logits, labels = _segmentation()
    counted = labels != IGNORE
    flat_logits = logits.movedim(1, -1)[counted]           # (K, C)
    reference = F.cross_entropy(flat_logits, labels[counted])
    for name, params in [("GeneralizedCELoss", {}), ("CrossEntropyLoss", {}), ("FocalLoss", dict(mode="multiclass", gamma=0.0))]:
        got = _loss(name, ignore_index=IGNORE, **params)(logits, labels)
        torch.testing.assert_close(got, reference, msg=name)


@pytest.mark.parametrize("name,params", [("CrossEntropyLoss", {}), ("NLLLoss", {}),
                                         ("OnlineHardExampleMiningCELoss", dict(min_kept=10)),
                                         ("FocalLoss", dict(mode="multiclass"))])
def test_class_index_losses_take_labels_with_a_channel_of_one(name, params):
    """Segmentation masks are often loaded as (N, 1, H, W); the seed's CE and NLL accepted them."""
    logits, labels = _segmentation()
    pred = logits.log_softmax(1) if name == "NLLLoss" else logits
    loss = _loss(name, ignore_index=IGNORE, **params)
    torch.testing.assert_close(loss(pred, labels.unsqueeze(1)), loss(pred, labels))


@pytest.mark.parametrize("name", ["BCEWithLogitsLoss", "BCELoss", "FocalLoss", "GeneralizedCELoss"])
def test_binary_cross_entropies_mean_over_counted_elements_only(name):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 6, 6, generator=gen)
    mask = (torch.rand(2, 1, 6, 6, generator=gen) > 0.5).float()
    mask[:, :, :2] = IGNORE
    counted = mask != IGNORE
    reference = F.binary_cross_entropy_with_logits(logits[counted], mask[counted])
    pred = torch.sigmoid(logits) if name == "BCELoss" else logits
    params = dict(gamma=0.0) if name == "FocalLoss" else dict(apply_sigmoid=True) if name == "GeneralizedCELoss" else {}
    got = _loss(name, ignore_index=IGNORE, **params)(pred, mask)
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-6)
    summed = _loss(name, ignore_index=IGNORE, reduction="sum", **params)(pred, mask)
    torch.testing.assert_close(summed, reference * counted.sum(), rtol=1e-5, atol=1e-5)


def test_overlap_losses_equal_the_loss_on_counted_pixels_alone():
    """Each sample has the same number of counted pixels, so they can be gathered into (N, K)."""
    gen = torch.Generator().manual_seed(2)
    prob = torch.rand(2, 1, 4, 4, generator=gen)
    mask = (torch.rand(2, 4, 4, generator=gen) > 0.5).float()
    mask[:, 0] = IGNORE                                     # the first row of every sample
    counted = mask != IGNORE
    sub_pred, sub_mask = prob[:, 0][counted].reshape(2, -1), mask[counted].reshape(2, -1)
    for name in ("BinaryDiceLoss", "IOULoss"):
        got = _loss(name, ignore_index=IGNORE)(prob, mask)
        torch.testing.assert_close(got, _loss(name)(sub_pred, sub_mask), msg=name)


def test_generalized_dice_counts_classes_over_counted_pixels():
    logits, labels = _segmentation(classes=2, n=1, h=4, w=4, seed=3)
    labels[0, 0] = IGNORE
    counted = labels != IGNORE
    sub_logits = logits.movedim(1, -1)[counted].t().unsqueeze(0)  # (1, C, K)
    got = _loss("GeneralizedDiceLoss", ignore_index=IGNORE, from_logits=True)(logits, labels)
    torch.testing.assert_close(got, _loss("GeneralizedDiceLoss", from_logits=True)(sub_logits, labels[counted][None]))


def test_a_fully_ignored_sample_is_left_out_of_the_batch_mean():
    logits, labels = _segmentation(n=2)
    labels[1] = IGNORE
    for name, params in CLASS_LOSSES:
        if name == "OnlineHardExampleMiningCELoss":
            continue  # it means over pixels of the whole batch, not over samples
        loss = _loss(name, **params)
        torch.testing.assert_close(loss(logits, labels), loss(logits[:1], labels[:1]), msg=name)


def test_everything_ignored_gives_zero_with_a_graph():
    logits, labels = _segmentation()
    labels[:] = IGNORE
    for name, params in CLASS_LOSSES:
        pred = logits.clone().requires_grad_(True)
        value = _loss(name, **params)(pred, labels)
        assert value.item() == 0.0, name
        value.backward()


def test_ssim_ignoring_nothing_equals_plain_ssim():
    gen = torch.Generator().manual_seed(4)
    x, y = torch.rand(2, 3, 16, 16, generator=gen), torch.rand(2, 3, 16, 16, generator=gen)
    plain = _loss("SSIMLoss")(x, y)
    torch.testing.assert_close(_loss("SSIMLoss", ignore_index=IGNORE)(x, y), plain)
    per_image, counted = _loss("SSIMLoss").masked_ssim(x, y, torch.ones_like(x, dtype=torch.bool))
    torch.testing.assert_close(1 - per_image.mean(), plain)
    assert counted.all()


# ---- the seed's spellings ---------------------------------------------------------------------

def test_generalized_ce_takes_the_seeds_target_shapes_and_config_form():
    logits, labels = _segmentation()
    compose = LossKeyCompose({"seg": [dict(name="GeneralizedCELoss", param=dict(ignore_index=IGNORE, lambda_weight=2.0))]})
    expected = 2.0 * F.cross_entropy(logits, labels.long(), ignore_index=IGNORE)
    torch.testing.assert_close(compose({"seg": (logits, labels.unsqueeze(1))}), expected)  # (N, 1, H, W) labels
    with pytest.raises(LossInputError, match="softmax cross-entropy expects class indices"):
        _loss("GeneralizedCELoss")(logits, torch.rand_like(logits))


def test_generalized_ce_sigmoid_mode_is_one_sigmoid_per_class():
    """C-channel logits with class-index labels: one-hot, then BCE-with-logits (not the seed's sigmoid twice)."""
    logits, labels = _segmentation()
    counted = labels != IGNORE
    one_hot = F.one_hot(torch.where(counted, labels, 0), 3).movedim(-1, 1).float()
    keep = counted.unsqueeze(1).expand_as(logits)
    reference = F.binary_cross_entropy_with_logits(logits[keep], one_hot[keep])
    torch.testing.assert_close(_loss("GeneralizedCELoss", apply_sigmoid=True, ignore_index=IGNORE)(logits, labels),
                               reference)


def test_apply_sigmoid_is_the_seeds_from_logits():
    gen = torch.Generator().manual_seed(5)
    logits, mask = torch.randn(2, 1, 8, 8, generator=gen), (torch.rand(2, 8, 8, generator=gen) > 0.5).float()
    for name in ("BinaryDiceLoss", "IOULoss"):
        torch.testing.assert_close(_loss(name, apply_sigmoid=True)(logits, mask), _loss(name, from_logits=True)(logits, mask))
        torch.testing.assert_close(_loss(name, apply_sigmoid=True)(logits, mask), _loss(name)(torch.sigmoid(logits), mask))
    multi, labels = _segmentation()
    torch.testing.assert_close(_loss("GeneralizedDiceLoss", apply_softmax=True)(multi, labels.clamp(max=2)),
                               _loss("GeneralizedDiceLoss", from_logits=True)(multi, labels.clamp(max=2)))
    # the seed's IoU and SSIM read apply_sigmoid=False as a softmax over classes
    soft = multi.softmax(1)
    torch.testing.assert_close(_loss("IOULoss", apply_sigmoid=False)(multi, labels.clamp(max=2)),
                               _loss("IOULoss")(soft, labels.clamp(max=2)))
    images = torch.randn(2, 3, 12, 12, generator=gen)
    target = torch.rand(2, 3, 12, 12, generator=gen)
    torch.testing.assert_close(_loss("SSIMLoss", apply_sigmoid=True)(images, target),
                               _loss("SSIMLoss")(torch.sigmoid(images), target))


def test_ssim_warns_once_about_images_outside_their_range(caplog):
    loss = _loss("SSIMLoss", window_size=5)
    images, target = torch.randn(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    with caplog.at_level("WARNING", logger="engine.loss"):
        loss(images, target)
        loss(images, target)
    assert caplog.text.count("set apply_sigmoid=True") == 1


def test_conflicting_spellings_and_logits_without_activation_are_errors():
    with pytest.raises(ConfigError, match="from_logits=True and apply_sigmoid=False disagree"):
        _loss("BinaryDiceLoss", from_logits=True, apply_sigmoid=False)
    _loss("BinaryDiceLoss", from_logits=True, apply_sigmoid=True)  # agreeing is fine
    logits = torch.randn(2, 1, 4, 4)
    with pytest.raises(LossInputError, match=r"outside \[0, 1\].*from_logits=True \(TrainFramework's apply_sigmoid=True"):
        _loss("IOULoss")(logits, (logits > 0).float())
    seg_logits, labels = _segmentation()
    with pytest.raises(LossInputError, match=r"SSIMLoss: pred has values outside \[0, 1\]"):
        _loss("SSIMLoss", window_size=5)(seg_logits, labels)
