"""Pixel transforms: what they compute, what they touch (only color_fields) and their dtype rules."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from sklearn.datasets import load_sample_image

import engine.transforms as T
import engine.transforms.functional as F
from engine.errors import ConfigError

PHOTO = load_sample_image("flower.jpg")[::4, ::4].copy()  # 107 x 160 RGB

# Every pixel transform, configured to change the image every time it runs.
PIXEL = {
    "RandomBrightness": dict(brightness_limit=(1.3, 1.5)),
    "RandomContrast": dict(contrast_limit=(1.3, 1.5)),
    "RandomSaturation": dict(saturation_limit=(0.2, 0.5)),
    "RandomHue": dict(hue_limit=(0.2, 0.3)),
    "RandomGamma": dict(gamma_limit=(1.5, 2.0)),
    "RandomCLAHE": dict(clip_limit=(3.0, 4.0)),
    "RandomCompress": dict(quality_lower=20, quality_upper=40, quality_step=5),
    "RandomSharpen": dict(alpha=(0.5, 1.0)),
    "RandomToneCurve": dict(scale=0.2),
    "RandomBrightnessContrast": dict(brightness_limit=(0.1, 0.2), contrast_limit=(0.2, 0.3)),
    "RandomGaussianBlur": dict(blur_limit=(5, 9)),
    "ToGray": dict(),
    "RandomColorJitter": dict(brightness_p=1.0, contrast_p=1.0, hue_p=1.0, hue_limit=(0.1, 0.2)),
}


def build(name, p=1.0, **extra):
    params = dict(PIXEL.get(name, {}), **extra)
    if name != "Normalize":
        params["p"] = p
    return T.build_transform(dict(name=name, **params))


def sample():
    mask = (PHOTO[..., 0] > 128).astype(np.uint8) * 3
    return dict(img=PHOTO.copy(), ref=PHOTO.copy(), mask=mask, img_fields=["img", "ref"], mask_fields=["mask"],
                color_fields=["img", "mask"], boxes=np.float32([[1, 2, 30, 40]]), bbox_fields=["boxes"],
                pts=np.float32([[3, 4]]), pts_fields=["pts"])


@pytest.mark.parametrize("name", list(PIXEL) + ["Normalize"])
def test_pixel_ops_touch_only_color_fields(name):
    s = sample()
    mask, ref, boxes, pts = s["mask"].copy(), s["ref"].copy(), s["boxes"].copy(), s["pts"].copy()
    np.random.seed(0)
    out = build(name)(s)
    assert not np.array_equal(out["img"], PHOTO), f"{name} should change the color field"
    # 'mask' is listed in color_fields too, but a mask is never recolored.
    assert out["mask"].tobytes() == mask.tobytes() and out["mask"].dtype == mask.dtype
    assert out["ref"].tobytes() == ref.tobytes(), "img_fields without color_fields stay as they are"
    np.testing.assert_array_equal(out["boxes"], boxes)
    np.testing.assert_array_equal(out["pts"], pts)
    assert out["img"].shape == PHOTO.shape
    assert out["img"].dtype == (np.float32 if name == "Normalize" else np.uint8)


@pytest.mark.parametrize("name", list(PIXEL))
def test_same_seed_same_output_and_one_draw_for_all_color_fields(name):
    def run(seed):
        s = sample()
        s["color_fields"] = ["img", "ref"]
        np.random.seed(seed)
        return build(name, p=0.7)(s)
    a, b = run(5), run(5)
    np.testing.assert_array_equal(a["img"], b["img"])
    np.testing.assert_array_equal(a["img"], a["ref"])  # one draw shared by every color field


@pytest.mark.parametrize("name", list(PIXEL))
def test_p0_is_identity_and_leaves_rng_alone(name):
    s = sample()
    np.random.seed(1)
    out = build(name, p=0.0)(s)
    assert out["img"] is s["img"]
    assert np.random.random() == np.random.RandomState(1).random_sample()


def test_probability_gate_rate():
    t = T.RandomBrightness(brightness_limit=(2.0, 2.0), p=0.3)
    np.random.seed(0)
    hits = sum(not np.array_equal(t(dict(img=PHOTO, color_fields=["img"]))["img"], PHOTO) for _ in range(400))
    assert 90 <= hits <= 150


def test_inputs_are_not_modified_in_place():
    s = sample()
    img = s["img"]
    np.random.seed(0)
    for name in PIXEL:
        build(name)(dict(s, img=img))
    np.testing.assert_array_equal(img, PHOTO)


# ---- known values -------------------------------------------------------------------------

def test_brightness_gamma_contrast_known_values():
    img = np.array([[0, 100, 128, 200]], np.uint8)
    assert F.adjust_brightness(img, 1.5).tolist() == [[0, 150, 192, 255]]
    assert F.adjust_gamma(img, 2.0).tolist() == [[0, 39, 64, 157]]  # 255 * (v/255)**2, rounded
    assert F.adjust_contrast(img, 0.0).tolist() == [[107, 107, 107, 107]]  # all at the mean 107
    assert F.adjust_contrast(img, 1.0).tolist() == img.tolist()
    assert F.adjust_brightness_contrast(img, 1.0, 0.1).tolist() == [[26, 126, 154, 226]]  # + 0.1 * 255
    out = T.RandomBrightness(brightness_limit=(1.5, 1.5), p=1.0)(dict(img=img, color_fields=["img"]))
    assert out["img"].tolist() == [[0, 150, 192, 255]]
    f = np.float32([[0.0, 0.5, 0.8]])
    np.testing.assert_allclose(F.adjust_brightness(f, 1.5), [[0.0, 0.75, 1.0]])
    np.testing.assert_allclose(F.adjust_gamma(f, 2.0), [[0.0, 0.25, 0.64]], rtol=1e-6)


def test_limit_conventions():
    assert T.RandomBrightness(brightness_limit=0.2).brightness_limit == (0.8, 1.2)
    assert T.RandomHue(hue_limit=0.1).hue_limit == (-0.1, 0.1)
    assert T.RandomCLAHE(clip_limit=4).clip_limit == (1.0, 4.0)
    assert T.RandomGaussianBlur(blur_limit=7)._sizes == [3, 5, 7]
    t = T.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.3)
    assert t.brightness_limit == (-0.2, 0.2) and t.contrast_limit == (-0.3, 0.3)


def test_gray_saturation_hue_known_values():
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    assert F.to_gray(red)[0, 0].tolist() == [76, 76, 76]  # 0.299 * 255
    assert T.ToGray()(dict(img=red, color_fields=["img"]))["img"].shape == (2, 2, 3)
    assert F.adjust_saturation(red, 0.0)[0, 0].tolist() == [76, 76, 76]
    np.testing.assert_array_equal(F.adjust_saturation(PHOTO, 1.0), PHOTO)
    # 8-bit hue: cv2 maps 360 degrees to 256 steps one way and 255 the other, so up to ~1.4
    # degrees (a few levels on a saturated primary) of error are expected.
    np.testing.assert_allclose(F.adjust_hue(red, 0.5)[0, 0], [0, 255, 255], atol=8)  # half a turn: red -> cyan
    np.testing.assert_allclose(F.adjust_hue(red, 1 / 3)[0, 0], [0, 255, 0], atol=8)
    np.testing.assert_allclose(F.adjust_hue(red, -1 / 3)[0, 0], [0, 0, 255], atol=8)
    f32 = F.adjust_hue(PHOTO.astype(np.float32) / 255, 0.1) * 255
    assert np.abs(F.adjust_hue(PHOTO, 0.1) - f32).mean() < 1.0, "uint8 agrees with the float computation"
    np.testing.assert_allclose(F.adjust_hue(red.astype(np.float32) / 255, 0.5)[0, 0], [0, 1, 1], atol=1e-6)
    gray = PHOTO[..., 0]
    assert F.adjust_hue(gray, 0.3) is gray and F.adjust_saturation(gray, 0.3) is gray


def test_normalize_seed_defaults_and_to_tensor():
    t = T.Normalize()
    assert t.mean == (123.675, 116.28, 103.53) and t.std == (58.395, 57.12, 57.375)
    out = t(dict(img=PHOTO, color_fields=["img"]))["img"]
    expected = (PHOTO.astype(np.float64) - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(F.denormalize(out, t.mean, t.std), PHOTO, atol=1e-3)
    np.testing.assert_allclose(F.normalize(PHOTO.astype(np.float32), t.mean, t.std), expected, atol=1e-4)
    tensor = F.to_tensor(out)
    assert tensor.shape == (3, 107, 160) and tensor.dtype == torch.float32 and tensor.is_contiguous()
    np.testing.assert_allclose(tensor.numpy(), expected.transpose(2, 0, 1), atol=1e-4)


def test_to_tensor_dtypes_and_layouts():
    t = F.to_tensor(PHOTO)
    assert t.shape == (3, 107, 160) and t.dtype == torch.float32 and t.is_contiguous()
    assert float(t.max()) <= 1.0 and torch.allclose(t[:, 5, 7] * 255, torch.tensor(PHOTO[5, 7], dtype=torch.float32))
    assert F.to_tensor(PHOTO[..., 0]).shape == (1, 107, 160)
    assert F.to_tensor(PHOTO[:, ::-1]).shape == (3, 107, 160), "negative strides are fine"
    assert F.to_tensor(np.zeros((4, 5), np.int64)).dtype == torch.int64
    assert torch.equal(F.to_tensor(np.full((2, 2), 3.0)), torch.full((1, 2, 2), 3.0))
    with pytest.raises(TypeError, match="to_tensor"):
        F.to_tensor(np.zeros(3))


def test_blur_sharpen_clahe_compress():
    np.testing.assert_array_equal(F.gaussian_blur(PHOTO, 5, 1.0), __import__("cv2").GaussianBlur(PHOTO, (5, 5), 1.0))
    assert F.sharpen(PHOTO, 0.0, 1.0).tobytes() == PHOTO.tobytes()
    assert F.sharpen(PHOTO, 1.0, 1.0).std() > PHOTO.std()
    assert F.clahe(PHOTO[..., :1], 2.0).shape == (107, 160, 1)
    near = F.compress(PHOTO, 100)
    assert near.shape == PHOTO.shape and np.abs(near.astype(int) - PHOTO).mean() < 4
    assert np.abs(F.compress(PHOTO, 5, "webp").astype(int) - PHOTO).mean() > 2
    with pytest.raises(TypeError, match="RandomCLAHE on results\\['img'\\].*uint8"):
        T.RandomCLAHE(p=1.0)(dict(img=PHOTO.astype(np.float32) / 255, color_fields=["img"]))


def test_tone_curve_identity_and_bounds():
    np.testing.assert_array_equal(F.tone_curve(PHOTO, 1 / 3, 2 / 3), PHOTO)  # control points on the diagonal
    assert F.tone_curve(PHOTO, 0.5, 0.9).mean() > PHOTO.mean()


def test_color_jitter_runs_each_op_with_its_own_probability_in_random_order():
    t = T.RandomColorJitter(brightness_p=1.0, contrast_p=0.0, saturation_p=1.0, hue_p=0.0, blur_p=0.0,
                            gamma_p=0.0, clahe_p=0.0)
    orders = set()
    np.random.seed(0)
    for _ in range(20):
        ops = t.get_params({})["ops"]
        names = tuple(type(op).__name__ for op, _ in ops)
        assert sorted(names) == ["RandomBrightness", "RandomSaturation"]
        orders.add(names)
    assert len(orders) == 2, "sub-ops run in a random order"
    assert T.RandomColorJitter().ops[-1].p == 0.2, "seed defaults"


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(PIXEL)), h=st.integers(8, 40), w=st.integers(8, 40),
       channels=st.sampled_from([1, 3]), seed=st.integers(0, 2 ** 16))
def test_shape_dtype_range_properties(name, h, w, channels, seed):
    rng = np.random.RandomState(seed)
    img = rng.randint(0, 256, (h, w, channels) if channels == 3 else (h, w)).astype(np.uint8)
    np.random.seed(seed)
    out = build(name)(dict(img=img, color_fields=["img"]))["img"]
    assert out.shape == img.shape and out.dtype == np.uint8
    if name not in ("RandomCLAHE", "RandomCompress", "RandomSharpen", "RandomGaussianBlur", "RandomColorJitter"):
        flt = img.astype(np.float32) / 255
        np.random.seed(seed)
        out = build(name)(dict(img=flt, color_fields=["img"]))["img"]
        assert out.shape == img.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0


def test_config_errors_name_parameter_value_and_expectation():
    cases = [
        (lambda: T.RandomBrightness(p=1.5), r"RandomBrightness: p=1\.5 is invalid; expected a number in \[0\.0, 1\.0\]"),
        (lambda: T.RandomGamma(gamma_limit=(1.2, 0.8)), r"gamma_limit=\(1\.2, 0\.8\).*low <= high"),
        (lambda: T.RandomHue(hue_limit=0.7), r"hue_limit=0\.7.*within \[-0\.5, 0\.5\]"),
        (lambda: T.RandomCompress(compression_type="png"), r"compression_type='png'.*'jpg' or 'webp'"),
        (lambda: T.RandomCompress(quality_lower=90, quality_upper=80), r"quality_upper=80.*\[90"),
        (lambda: T.RandomGaussianBlur(blur_limit=(4, 6)), r"blur_limit=\(4, 6\).*odd"),
        (lambda: T.RandomColorJitter(gamma_p=2), r"RandomColorJitter: gamma_p=2 is invalid"),
        (lambda: T.RandomColorJitter(clahe_limit=(5, 2)), r"RandomColorJitter: clahe_limit=\(5, 2\)"),
        (lambda: T.Normalize(std=(1, 0, 1)), r"Normalize: std=\(1, 0, 1\).*> 0"),
        (lambda: T.RandomSharpen(alpha=1.5), r"alpha=1\.5.*within \[0\.0, 1\.0\]"),
    ]
    for make, pattern in cases:
        with pytest.raises(ConfigError, match=pattern):
            make()


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match="RandomContrast on results\\['img'\\]"):
        T.RandomContrast(p=1.0)(dict(img=np.zeros((4, 4, 2), np.uint8), color_fields=["img"]))
    with pytest.raises(TypeError, match="uint8 .* or float32"):
        T.RandomBrightness(p=1.0)(dict(img=np.zeros((4, 4), np.uint16), color_fields=["img"]))
