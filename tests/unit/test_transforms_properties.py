"""Property tests (hypothesis): invariants every transform keeps, for random parameters and inputs.

Spatial transforms: images stay uint8 (3-channel) with the output size the mask also has,
masks only carry labels they had (fills use label 0, which every input mask contains),
boxes stay inside the image when ``clip_border``. Pixel transforms: shape and uint8 dtype
kept (Normalize: float32, same shape), masks/boxes/points untouched.
"""

import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.transforms as T

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ratio = st.floats(0.0, 0.5)
INTERP = st.sampled_from(["INTER_NEAREST", "INTER_LINEAR", "INTER_CUBIC", "INTER_AREA"])


@st.composite
def samples(draw):
    h, w = draw(st.integers(8, 72)), draw(st.integers(8, 72))
    rng = np.random.RandomState(draw(st.integers(0, 2**31 - 1)))
    img = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
    labels = draw(st.lists(st.integers(1, 255), min_size=1, max_size=4))
    mask = rng.choice([0] + labels, size=(h, w)).astype(np.uint8)
    mask[0, 0] = 0  # background present: fills (padding, uncovered pixels) use 0
    n = draw(st.integers(0, 5))
    x1, y1 = rng.uniform(0, w - 1, n), rng.uniform(0, h - 1, n)
    boxes = np.stack([x1, y1, rng.uniform(x1 + 0.5, w), rng.uniform(y1 + 0.5, h)], axis=1).astype(np.float32)
    pts = np.stack([rng.uniform(0, w, 6), rng.uniform(0, h, 6)], axis=1).astype(np.float32)
    return dict(img=img, img_fields=["img"], color_fields=["img"], mask=mask, mask_fields=["mask"],
                boxes=boxes.reshape(-1, 4), bbox_fields=["boxes"], labels=np.arange(n, dtype=np.int64),
                label_fields={"boxes": ["labels"]}, pts=pts, pts_fields=["pts"],
                img_shape=(h, w), ori_shape=(h, w))


def copy_sample(s):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}


spatial = st.one_of(
    st.builds(T.RandomFlip, p=st.just(1.0),
              direction=st.lists(st.sampled_from(["horizontal", "vertical", "diagonal"]), min_size=1, unique=True)),
    st.builds(T.Resize, target_size=st.one_of(st.integers(4, 96), st.tuples(st.integers(4, 96), st.integers(4, 96))),
              interpolation=INTERP, keep_ratio=st.booleans(), is_padding=st.booleans(), clip_border=st.just(True)),
    st.builds(T.RandomResize, max_edge_length=st.lists(st.integers(4, 64), min_size=1, max_size=3),
              padding_size=st.sampled_from([None, 64, 80]), interpolation=INTERP, keep_ratio=st.booleans(),
              clip_border=st.just(True)),
    st.builds(lambda a, b: T.RandomCrop(min_crop_ratio=min(a, b), max_crop_ratio=max(a, b), clip_border=True),
              st.floats(0.0, 0.6), st.floats(0.0, 0.6)),
    st.just(T.Pad32()),
    st.builds(T.RandomAffine, rotate_degree_range=st.floats(0, 180), max_translate_ratio=st.floats(0, 0.5),
              scaling_ratio_range=st.tuples(st.floats(0.5, 1.0), st.floats(1.0, 1.6)),
              max_shear_degree=st.floats(0, 30), border_val=st.integers(0, 255), clip_border=st.just(True),
              min_bbox_size=st.floats(0, 4), min_area_ratio=st.floats(0, 0.5), border_ratio=st.floats(0.5, 1.5),
              interpolation=INTERP),
)

limit = st.floats(0.0, 0.6)
pixel = st.one_of(
    st.builds(T.RandomBrightness, brightness_limit=limit, p=st.just(1.0)),
    st.builds(T.RandomContrast, contrast_limit=limit, p=st.just(1.0)),
    st.builds(T.RandomSaturation, saturation_limit=limit, p=st.just(1.0)),
    st.builds(T.RandomHue, hue_limit=st.floats(0.0, 0.5), p=st.just(1.0)),
    st.builds(T.RandomGamma, gamma_limit=st.tuples(st.floats(0.3, 1.0), st.floats(1.0, 3.0)), p=st.just(1.0)),
    st.builds(T.RandomCLAHE, clip_limit=st.floats(1.0, 8.0), p=st.just(1.0)),
    st.builds(lambda lo, span, kind: T.RandomCompress(quality_lower=lo, quality_upper=lo + span,
                                                      compression_type=kind, p=1.0),
              st.integers(5, 80), st.integers(0, 20), st.sampled_from(["jpg", "webp"])),
    st.builds(T.RandomSharpen, p=st.just(1.0)),
    st.builds(T.RandomToneCurve, scale=st.floats(0.0, 0.5), p=st.just(1.0)),
    st.builds(T.RandomBrightnessContrast, brightness_limit=limit, contrast_limit=limit, p=st.just(1.0)),
    st.builds(T.RandomGaussianBlur, blur_limit=st.sampled_from([(3, 3), (3, 7), (5, 9)]), p=st.just(1.0)),
    st.builds(T.ToGray, p=st.just(1.0)),
    st.builds(T.RandomColorJitter, brightness_limit=limit, brightness_p=st.just(1.0), contrast_limit=limit,
              contrast_p=st.just(1.0), saturation_limit=limit, saturation_p=st.just(1.0),
              hue_limit=st.floats(0.0, 0.5), hue_p=st.just(1.0), blur_p=st.floats(0, 1), gamma_p=st.floats(0, 1),
              clahe_p=st.floats(0, 1)),
)


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)


@SETTINGS
@given(sample=samples(), transform=spatial, seed=st.integers(0, 2**31 - 1))
def test_spatial_keep_dtype_labels_and_boxes_inside(sample, transform, seed):
    seed_all(seed)
    out = transform(copy_sample(sample))
    img, mask = out["img"], out["mask"]
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, type(transform).__name__
    assert mask.shape == img.shape[:2] and mask.dtype == sample["mask"].dtype
    assert set(np.unique(mask).tolist()) <= set(np.unique(sample["mask"]).tolist()), type(transform).__name__
    h, w = img.shape[:2]
    boxes = np.asarray(out["boxes"]).reshape(-1, 4)
    assert len(boxes) == len(out["labels"])  # labels follow box filtering
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0), (type(transform).__name__, boxes)
    assert np.all(boxes[:, 2] <= w) and np.all(boxes[:, 3] <= h), (type(transform).__name__, boxes, (h, w))
    assert np.all(boxes[:, 0] <= boxes[:, 2]) and np.all(boxes[:, 1] <= boxes[:, 3])


@SETTINGS
@given(sample=samples(), transform=pixel, seed=st.integers(0, 2**31 - 1))
def test_pixel_keep_shape_dtype_and_leave_geometry_alone(sample, transform, seed):
    seed_all(seed)
    out = transform(copy_sample(sample))
    assert out["img"].shape == sample["img"].shape and out["img"].dtype == np.uint8, type(transform).__name__
    for key in ("mask", "boxes", "pts", "labels"):
        assert np.array_equal(out[key], sample[key]), (type(transform).__name__, key)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(sample=samples(), mean=st.tuples(*[st.floats(0, 255)] * 3), std=st.tuples(*[st.floats(1, 128)] * 3))
def test_normalize_gives_float32_of_the_same_shape(sample, mean, std):
    out = T.Normalize(mean=mean, std=std)(copy_sample(sample))
    assert out["img"].shape == sample["img"].shape and out["img"].dtype == np.float32
    assert np.array_equal(out["mask"], sample["mask"])
