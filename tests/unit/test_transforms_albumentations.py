"""Where albumentations has the same operation with the same parameters, outputs agree.

Tolerance: 1 gray level on uint8 (the libraries round a float intermediate differently),
except hue (cv2's 8-bit HSV quantizes hue; mean difference under one level); 1e-4 on
float32 images in [0, 1]. albumentations 2.0.8 (MIT) is in the ``test`` extra, so these
run in CI. Not compared: JPEG/WebP (albumentations encodes RGB as if it were BGR, so its
chroma differs), whose fast path is checked against cv2 itself in test_transforms_kernels.
"""

import warnings

import albumentations as A  # the test extra
import cv2
import numpy as np
import pytest
from sklearn.datasets import load_sample_image

import engine.transforms as T
import engine.transforms.functional as F

IMG = load_sample_image("flower.jpg")[::4, ::4].copy()
IMG_F = (IMG / np.float32(255)).astype(np.float32)


def albu(transform, image=IMG, **targets):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transform(image=image, **targets)["image"]


def jitter(brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0):
    return A.ColorJitter(brightness=(brightness,) * 2, contrast=(contrast,) * 2, saturation=(saturation,) * 2,
                         hue=(hue,) * 2, p=1.0)


@pytest.mark.parametrize("ours, theirs", [
    (lambda: F.adjust_brightness(IMG, 1.3), lambda: jitter(brightness=1.3)),
    (lambda: F.adjust_contrast(IMG, 1.3), lambda: jitter(contrast=1.3)),
    (lambda: F.adjust_saturation(IMG, 1.4), lambda: jitter(saturation=1.4)),
    (lambda: F.adjust_gamma(IMG, 1.5), lambda: A.RandomGamma(gamma_limit=(150, 150), p=1.0)),
    (lambda: F.to_gray(IMG), lambda: A.ToGray(p=1.0)),
    (lambda: F.adjust_brightness_contrast(IMG, 1.2, 0.1), lambda: A.RandomBrightnessContrast((0.1, 0.1), (0.2, 0.2),
                                                                                              p=1.0)),
    (lambda: F.adjust_brightness_contrast(IMG, 1.2, 0.1, False),
     lambda: A.RandomBrightnessContrast((0.1, 0.1), (0.2, 0.2), brightness_by_max=False, p=1.0)),
    (lambda: F.sharpen(IMG, 0.5, 1.0), lambda: A.Sharpen(alpha=(0.5, 0.5), lightness=(1.0, 1.0), p=1.0)),
    (lambda: F.clahe(IMG, 3.0), lambda: A.CLAHE(clip_limit=(3, 3), p=1.0)),
    (lambda: F.gaussian_blur(IMG, 5, 1.2), lambda: A.GaussianBlur(blur_limit=(5, 5), sigma_limit=(1.2, 1.2), p=1.0)),
    (lambda: F.tone_curve(IMG, 0.25, 0.75), lambda: A.RandomToneCurve(scale=0.0, p=1.0)),
    (lambda: F.flip_image(IMG, "horizontal"), lambda: A.HorizontalFlip(p=1.0)),
    (lambda: F.flip_image(IMG, "vertical"), lambda: A.VerticalFlip(p=1.0)),
    (lambda: F.resize_image(IMG, (64, 80), cv2.INTER_LINEAR), lambda: A.Resize(64, 80)),
], ids=["brightness", "contrast", "saturation", "gamma", "gray", "brightness_contrast", "bc_by_mean", "sharpen",
        "clahe", "blur", "tone_curve", "hflip", "vflip", "resize"])
def test_same_operation_same_pixels(ours, theirs):
    diff = np.abs(ours().astype(int) - albu(theirs()).astype(int))
    assert diff.max() <= 1


@pytest.mark.parametrize("ours, theirs", [
    (lambda: F.adjust_gamma(IMG_F, 1.5), lambda: A.RandomGamma(gamma_limit=(150, 150), p=1.0)),
    (lambda: F.adjust_gamma(IMG_F, 0.6), lambda: A.RandomGamma(gamma_limit=(60, 60), p=1.0)),
    (lambda: F.adjust_brightness(IMG_F, 1.3), lambda: jitter(brightness=1.3)),
    (lambda: F.adjust_contrast(IMG_F, 0.7), lambda: jitter(contrast=0.7)),
    (lambda: F.adjust_saturation(IMG_F, 1.4), lambda: jitter(saturation=1.4)),
    (lambda: F.to_gray(IMG_F), lambda: A.ToGray(p=1.0)),
    (lambda: F.adjust_brightness_contrast(IMG_F, 1.2, 0.1), lambda: A.RandomBrightnessContrast((0.1, 0.1), (0.2, 0.2),
                                                                                                p=1.0)),
    (lambda: F.gaussian_blur(IMG_F, 5, 1.2), lambda: A.GaussianBlur(blur_limit=(5, 5), sigma_limit=(1.2, 1.2), p=1.0)),
    (lambda: F.adjust_hue(IMG_F, 0.2), lambda: jitter(hue=0.2)),
    (lambda: F.adjust_hue(IMG_F, -0.3), lambda: jitter(hue=-0.3)),
], ids=["gamma", "gamma_below_1", "brightness", "contrast", "saturation", "gray", "brightness_contrast", "blur",
        "hue", "hue_negative"])
def test_same_operation_same_values_float32(ours, theirs):
    out = ours()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, albu(theirs(), image=IMG_F), atol=1e-4)


def test_float32_tone_curve_within_albumentations_quantization():
    # albumentations applies its float32 tone curve as a 256-entry table; engine evaluates the cubic exactly.
    out = F.tone_curve(IMG_F, 0.25, 0.75)
    np.testing.assert_allclose(out, albu(A.RandomToneCurve(scale=0.0, p=1.0), image=IMG_F), atol=1 / 255)


def test_hue_and_normalize():
    diff = np.abs(F.adjust_hue(IMG, 0.2).astype(int) - albu(jitter(hue=0.2)).astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 8
    ours = F.normalize(IMG, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
    theirs = albu(A.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)))
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_boxes_and_points_agree_where_conventions_do():
    boxes, pts = np.float32([[10, 20, 50, 60]]), np.float32([[10.5, 20.5]])
    params = dict(bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
                  keypoint_params=A.KeypointParams(format="xy", remove_invisible=False))
    for ours, theirs in [(T.RandomFlip(p=1.0), A.HorizontalFlip(p=1.0)),
                         (T.Resize(target_size=(50, 70), keep_ratio=False), A.Resize(50, 70))]:
        out = ours(dict(img=IMG, img_fields=["img"], boxes=boxes, bbox_fields=["boxes"], pts=pts, pts_fields=["pts"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = A.Compose([theirs], **params)(image=IMG, bboxes=boxes, labels=[0], keypoints=pts)
        np.testing.assert_allclose(out["boxes"], ref["bboxes"], atol=1e-4)
        if isinstance(ours, T.Resize):
            np.testing.assert_allclose(out["pts"], ref["keypoints"], atol=1e-4)
        else:
            # albumentations flips keypoints as pixel indices (w - 1 - x); engine uses continuous
            # coordinates (w - x), the convention under which boxes and points flip alike.
            np.testing.assert_allclose(out["pts"] - [1, 0], ref["keypoints"], atol=1e-4)
