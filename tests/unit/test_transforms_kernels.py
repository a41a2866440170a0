"""The fast paths of the pixel kernels give the pixels of the plain computation.

Lookup tables go through StringZilla, the color jitter writes into its own intermediate,
JPEG goes through TurboJPEG in RGB: each is checked here against the straightforward numpy/cv2
computation it replaces (JPEG, whose encoder rounds differently, against cv2's round trip
within a tolerance), and for not touching its input.
"""

import cv2
import numpy as np
import pytest
from sklearn.datasets import load_sample_image

import engine.transforms as T
import engine.transforms.functional as F
from engine.data.dataset import EngineDataSet
from engine.data.loader import SeededDataset
from engine.transforms import lut

IMG = load_sample_image("china.jpg")[::5, ::5].copy()
IMG_F = (IMG / np.float32(255)).astype(np.float32)
RNG = np.random.RandomState(0)
TABLE = RNG.randint(0, 256, 256).astype(np.uint8)


@pytest.mark.parametrize("img", [
    IMG, IMG[..., :1], IMG[..., 0], IMG[::2, 1::3], np.zeros((0, 5, 3), np.uint8),
    RNG.randint(0, 256, (7, 11, 5)).astype(np.uint8),
], ids=["rgb", "hw1", "hw", "strided", "empty", "5ch"])
def test_apply_table_is_indexing_and_leaves_input(img):
    before = img.copy()
    out = lut.apply_table(img, TABLE)
    np.testing.assert_array_equal(out, TABLE[img])
    np.testing.assert_array_equal(img, before)
    assert out.shape == img.shape and out.flags.c_contiguous and not np.shares_memory(out, img)


def test_apply_table_inplace_and_its_checks():
    img = IMG.copy()
    assert lut.apply_table(img, TABLE, inplace=True) is img
    np.testing.assert_array_equal(img, TABLE[IMG])
    with pytest.raises(ValueError, match="contiguous"):
        lut.apply_table(IMG.copy()[:, ::2], TABLE, inplace=True)
    with pytest.raises(TypeError, match="uint8"):
        lut.apply_table(IMG_F, TABLE)
    with pytest.raises(TypeError, match="table"):
        lut.apply_table(IMG, TABLE[:255])


def test_tables_round_clip_and_compose():
    np.testing.assert_array_equal(lut.linear_table(1.3, -20), np.clip(np.rint(np.arange(256) * 1.3 - 20), 0, 255))
    inner, outer = lut.linear_table(0.7, 10), lut.curve_table(lambda v: 255 * (v / 255) ** 2)
    np.testing.assert_array_equal(lut.apply_table(IMG, lut.compose(inner, outer)),
                                  lut.apply_table(lut.apply_table(IMG, inner), outer))


def bezier(t, low_y, high_y):
    return 3 * (1 - t) ** 2 * t * low_y + 3 * (1 - t) * t ** 2 * high_y + t ** 3


@pytest.mark.parametrize("img", [IMG, IMG_F], ids=["uint8", "float32"])
def test_point_ops_match_the_formula(img):
    top = 255.0 if img.dtype == np.uint8 else 1.0
    tol = 0.5 if img.dtype == np.uint8 else 1e-5  # uint8: rounded to nearest, as the formula rounded
    v = img.astype(np.float64)
    for out, ref in [(F.adjust_gamma(img, 1.7), top * (v / top) ** 1.7),
                     (F.adjust_brightness(img, 1.25), v * 1.25),
                     (F.adjust_brightness_contrast(img, 0.8, 0.1), v * 0.8 + 0.1 * top),
                     (F.tone_curve(img, 0.2, 0.85), top * bezier(v / top, 0.2, 0.85))]:
        assert out.dtype == img.dtype and out.shape == img.shape
        assert np.abs(out - np.clip(ref, 0, top)).max() <= tol


def test_gray_is_the_601_luma_on_every_channel():
    out = F.to_gray(IMG)
    luma = IMG.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert out.shape == IMG.shape and (out == out[..., :1]).all()
    assert np.abs(out[..., 0] - luma).max() <= 1
    # uint8: exactly cvtColor's fixed-point luma (its rounding), in every channel
    np.testing.assert_array_equal(out, np.repeat(cv2.cvtColor(IMG, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2))


def test_webp_decodes_to_the_same_pixels_as_bgr_and_swap():
    _, buf = cv2.imencode(".webp", cv2.cvtColor(IMG, cv2.COLOR_RGB2BGR), [int(cv2.IMWRITE_WEBP_QUALITY), 80])
    ref = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(F.compress(IMG, 80, "webp"), ref)


@pytest.mark.parametrize("quality", [0, 20, 80, 95])
def test_jpeg_weighs_rgb_as_cv2_does_bgr(quality):
    # TurboJPEG's encoder rounds its DCT differently from cv2's (a few levels on some pixels),
    # but with the channels in the right order: close to cv2's BGR round trip, much closer than
    # to the round trip of RGB bytes fed to cv2 as if BGR, and as faithful to the original.
    ours = F.compress(IMG, quality).astype(int)
    _, buf = cv2.imencode(".jpg", cv2.cvtColor(IMG, cv2.COLOR_RGB2BGR), [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    right = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB).astype(int)
    _, buf = cv2.imencode(".jpg", IMG, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    swapped = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).astype(int)
    assert np.abs(ours - right).mean() < 1.5
    assert np.abs(ours - right).mean() < 0.6 * np.abs(ours - swapped).mean()
    assert np.abs(ours - IMG).mean() < 1.05 * np.abs(right - IMG).mean()


def _cv2_jpeg_error(img, quality):
    """Mean absolute error of cv2's JPEG round trip (channels in BGR order, as its codec wants)."""
    color = img.ndim == 3 and img.shape[2] == 3
    src = np.ascontiguousarray(img[..., ::-1] if color else img)
    out = cv2.imdecode(cv2.imencode(".jpg", src, [int(cv2.IMWRITE_JPEG_QUALITY), quality])[1], cv2.IMREAD_UNCHANGED)
    out = out.reshape(img.shape)
    return np.abs((out[..., ::-1] if color else out).astype(int) - img).mean()


def test_jpeg_gray_and_strided_inputs():
    gray = IMG[..., 1]
    for img in (gray, gray[..., None], IMG[:, : IMG.shape[1] // 2], IMG[:, ::2]):
        out = F.compress(img, 60)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - img).mean() < 1.05 * _cv2_jpeg_error(img, 60)
    np.testing.assert_array_equal(F.compress(IMG[:, ::2], 60), F.compress(np.ascontiguousarray(IMG[:, ::2]), 60))


@pytest.mark.parametrize("img", [IMG, IMG_F, IMG[..., :1]], ids=["uint8", "float32", "gray"])
def test_jitter_chain_in_place_equals_op_by_op_and_keeps_input(img):
    jitter = T.RandomColorJitter(brightness_p=1, contrast_p=1, saturation_p=1, hue_p=1, blur_p=1, gamma_p=1,
                                 clahe_p=1 if img.dtype == np.uint8 else 0)
    before = img.copy()
    for seed in range(6):
        np.random.seed(seed)
        params = jitter.get_params({})
        state = np.random.get_state()[1].copy()
        ref = img
        for op, p in params["ops"]:
            ref = op.apply(ref, **p)  # each op on its own, allocating
        out = jitter.apply(img, **params)
        np.testing.assert_array_equal(out, ref)
        np.testing.assert_array_equal(img, before)
        np.testing.assert_array_equal(np.random.get_state()[1], state)  # applying draws nothing


class _JitteredPhotos(EngineDataSet):
    """The seed README's training pipeline on one photo, as a user dataset runs it."""

    def __init__(self):
        super().__init__([
            dict(name="RandomFlip", direction=["horizontal", "vertical", "diagonal"], p=0.5),
            dict(name="Resize", target_size=48, keep_ratio=False),
            dict(name="RandomColorJitter", brightness_p=0.6, contrast_p=0.6, saturation_p=0.5, hue_p=0.5,
                 blur_p=0.5, gamma_p=0.5, clahe_p=0.5),
        ])

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return self.data_pipeline(dict(img=IMG, img_fields=["img"], color_fields=["img"]))["img"]


def test_augmented_stream_resumes_bit_exactly_and_leaves_the_source_alone():
    dataset = SeededDataset(_JitteredPhotos())
    items = [(i % 8, 7919 * i + 1) for i in range(12)]  # (index, per-sample seed) as the sampler yields them
    before = IMG.copy()
    straight = dataset.__getitems__(items)
    resumed = dataset.__getitems__(items[5:])
    assert all(np.array_equal(a, b) for a, b in zip(straight[5:], resumed))
    assert len({a.tobytes() for a in straight}) > 6  # the draws differ between samples
    np.testing.assert_array_equal(IMG, before)


def test_jitter_composes_consecutive_tables_into_one_pass(monkeypatch):
    # brightness, contrast and gamma only: every order is one run of table ops, and contrast
    # (whose table reads its input's mean) forces the ops before it out first
    jitter = T.RandomColorJitter(brightness_p=1, contrast_p=1, saturation_p=0, hue_p=0, blur_p=0, gamma_p=1,
                                 clahe_p=0)
    passes = []
    real = lut.apply_table
    monkeypatch.setattr(T.pixel, "apply_table", lambda *a, **k: passes.append(1) or real(*a, **k))
    for seed in range(8):
        np.random.seed(seed)
        params = jitter.get_params({})
        names = [type(op).__name__ for op, _ in params["ops"]]
        ref = IMG
        for op, p in params["ops"]:
            ref = op.apply(ref, **p)
        passes.clear()
        np.testing.assert_array_equal(jitter.apply(IMG, **params), ref)
        assert len(passes) == (1 if names[0] == "RandomContrast" else 2), names


def test_tables_equal_the_plain_rounded_clipped_curves():
    v = np.arange(256, dtype=np.float64)
    rng = np.random.RandomState(1)
    for factor, offset, gamma in zip(rng.uniform(0, 3, 200), rng.uniform(-300, 300, 200), rng.uniform(1e-3, 5, 200)):
        np.testing.assert_array_equal(lut.linear_table(factor, offset),
                                      np.clip(np.rint(v * factor + offset), 0, 255).astype(np.uint8))
        np.testing.assert_array_equal(F.gamma_table(gamma),
                                      np.clip(np.rint(255 * np.power(v / 255, gamma)), 0, 255).astype(np.uint8))
    # cv2.pow is within an ulp of np.power: the same rounded tables, integer powers included
    for gamma in [1.0, 2.0, 3.0, 0.5] + list(rng.uniform(0.05, 6, 2000)):
        np.testing.assert_array_equal(F.gamma_table(gamma), np.rint(255 * np.power(v / 255, gamma)).astype(np.uint8))
    with np.errstate(divide="ignore"):
        for gamma in (0.0, -0.5):  # outside what RandomGamma draws, still the clipped curve
            np.testing.assert_array_equal(F.gamma_table(gamma),
                                          np.clip(np.rint(255 * np.power(v / 255, gamma)), 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(lut.curve_table(lambda x: x), v.astype(np.uint8))  # identity: input values kept
    np.testing.assert_array_equal(lut.curve_table(lambda x: x), v.astype(np.uint8))


@pytest.mark.parametrize("img", [IMG, IMG_F], ids=["uint8", "float32"])
def test_brightness_saturation_and_sharpen_equal_their_plain_matrices(img):
    luma = np.array([0.299, 0.587, 0.114])
    rng = np.random.RandomState(2)
    for factor, alpha, lightness in rng.uniform(0, 2, (20, 3)).tolist():  # Python floats, as the transforms draw
        alpha = min(alpha, 1.0)
        plain = F.apply_affine_color(img, factor * np.eye(3) + (1 - factor) * np.tile(luma, (3, 1)))
        np.testing.assert_array_equal(F.adjust_saturation(img, factor), plain)
        np.testing.assert_array_equal(F.adjust_brightness(img, factor),
                                      F.apply_affine_color(img, factor * np.eye(3)) if img.dtype != np.uint8 else
                                      np.clip(np.rint(img * factor), 0, 255).astype(np.uint8))
        laplacian = np.array([[-1, -1, -1], [-1, 8 + lightness, -1], [-1, -1, -1]], np.float32)
        identity = np.zeros((3, 3), np.float32)
        identity[1, 1] = 1
        sharp = cv2.filter2D(img, -1, (1 - alpha) * identity + alpha * laplacian)
        np.testing.assert_array_equal(F.sharpen(img, alpha, lightness), sharp if img.dtype == np.uint8 else
                                      np.clip(sharp, 0, 1))


@pytest.mark.parametrize("shift", [0.03, -0.2, 0.5, 0.499])
def test_hue_shift_equals_the_wrapping_add_on_the_hue_plane(shift):
    hsv = cv2.cvtColor(IMG, cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] += np.uint8(int(round(shift * 256)) % 256)
    before = IMG.copy()
    np.testing.assert_array_equal(F.adjust_hue(IMG, shift), cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL))
    np.testing.assert_array_equal(IMG, before)


@pytest.mark.parametrize("shift", [0.03, -0.2, -0.5, 0.499, -1e-20])
def test_float_hue_shift_equals_the_modulo_on_the_hue_plane(shift):
    # the kernel adds a turn in [0, 1) and leaves hues in [360, 720) to cv2's HSV2RGB to wrap
    hsv = cv2.cvtColor(IMG_F, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + shift * 360.0, 360.0)
    before = IMG_F.copy()
    np.testing.assert_allclose(F.adjust_hue(IMG_F, shift), cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), atol=1e-5)
    np.testing.assert_array_equal(IMG_F, before)


@pytest.mark.parametrize("img", [IMG, IMG[..., :1], IMG[..., 0], IMG_F, IMG.astype(np.float64)],
                         ids=["rgb", "hw1", "hw", "float32", "float64"])
def test_normalize_transform_reuses_its_table_and_equals_the_formula(img):
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    channels = 1 if img.ndim == 2 else img.shape[2]
    mean, std = (mean, std) if channels == 3 else (mean[:1], std[:1])
    m, s = np.float32(mean), np.float32(1.0 / np.asarray(std))
    ref = ((img.astype(np.float32).reshape(*img.shape[:2], channels) - m) * s).reshape(img.shape)
    t = T.Normalize(mean=mean, std=std)
    for _ in range(2):  # the second call takes the kept uint8 table
        out = t(dict(img=img, color_fields=["img"]))["img"]
        assert out.dtype == np.float32 and out.shape == img.shape
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(out, F.normalize(img, mean, std))
    assert len(t._tables) == (img.dtype == np.uint8)
    if img.dtype != np.uint8:
        np.testing.assert_array_equal(out, ref)  # float input: the same float32 operations as before
    with pytest.raises(ValueError, match="Normalize on results\\['img'\\].*mean has 3 values for a 5-channel"):
        T.Normalize()(dict(img=np.zeros((4, 4, 5), img.dtype), color_fields=["img"]))
