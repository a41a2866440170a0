"""Spatial transforms keep images, masks, keypoints and boxes in agreement.

The sample is a real photo (scikit-learn's china.jpg) with a gray rectangle and four
colored 7 x 7 markers drawn on it. The mask labels the rectangle (10) and the markers
(1..4); the keypoints are the markers' centers and the box is the rectangle. After a
transform, the markers and the rectangle are found again in the moved mask, and the
moved keypoints and box must land on them; the image must show the marker colors where
the keypoints say.
"""

import numpy as np
import pytest
from sklearn.datasets import load_sample_image

import engine.transforms as T

RECT = (60, 50, 140, 110)  # x1, y1, x2, y2 in continuous coordinates (pixel columns 60..139)
MARKERS = [(40.5, 30.5), (170.5, 35.5), (165.5, 125.5), (30.5, 120.5)]
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
LABELS = {1, 2, 3, 4, 10}


def make_sample(with_photo: bool = True) -> dict:
    img = load_sample_image("china.jpg")[100:260, 200:400].copy() if with_photo else np.zeros((160, 200, 3), np.uint8)
    mask = np.zeros(img.shape[:2], np.uint8)
    x1, y1, x2, y2 = RECT
    img[y1:y2, x1:x2] = 128
    mask[y1:y2, x1:x2] = 10
    for i, ((x, y), color) in enumerate(zip(MARKERS, COLORS)):
        c, r = int(x), int(y)
        img[r - 3:r + 4, c - 3:c + 4] = color
        mask[r - 3:r + 4, c - 3:c + 4] = i + 1
    return dict(
        img=img, mask=mask, img_fields=["img"], mask_fields=["mask"], color_fields=["img"],
        pts=np.float32(MARKERS), pts_fields=["pts"], boxes=np.float32([RECT]), bbox_fields=["boxes"],
        labels=np.int64([7]), label_fields={"boxes": ["labels"]},
        # Nearest keeps the marker colors exact, so the image can be checked at each keypoint.
        interpolation={"img": "INTER_NEAREST"},
    )


def region(mask: np.ndarray, label: int):
    rows, cols = np.nonzero(mask == label)
    return rows, cols


def check_consistent(out: dict, tol: float = 1.6, markers=range(4)) -> None:
    img, mask = out["img"], out["mask"]
    assert img.shape[:2] == mask.shape == tuple(out["img_shape"])
    assert set(np.unique(mask)) <= LABELS | {0}, "nearest interpolation must keep the label set"
    for i in markers:
        rows, cols = region(mask, i + 1)
        assert rows.size, f"marker {i + 1} vanished"
        found = np.array([cols.mean() + 0.5, rows.mean() + 0.5])
        assert np.abs(out["pts"][i] - found).max() <= tol, (i, out["pts"][i], found)
        x, y = np.floor(out["pts"][i]).astype(int)
        assert tuple(img[y, x]) == COLORS[i], f"keypoint {i} is not on its marker in the image"
    rows, cols = region(mask, 10)
    found_box = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    assert out["boxes"].shape == (1, 4) and out["labels"].tolist() == [7]
    assert np.abs(out["boxes"][0] - found_box).max() <= tol, (out["boxes"][0], found_box)
    gray = np.all(img == 128, axis=2)
    assert gray[mask == 10].mean() > 0.98, "the image's rectangle is where the mask's is"


@pytest.mark.parametrize("direction", ["horizontal", "vertical", "diagonal"])
def test_flip_moves_everything_together(direction):
    out = T.RandomFlip(p=1.0, direction=direction)(make_sample())
    check_consistent(out, tol=1e-6)
    assert out["flip_direction"] == direction


def test_flip_known_values_and_list_direction():
    img = np.arange(6, dtype=np.uint8).reshape(2, 3)
    out = T.RandomFlip(p=1.0, direction="horizontal")(dict(img=img, img_fields=["img"],
                                                          pts=np.float32([[0.5, 0.5]]), pts_fields=["pts"]))
    assert out["img"].tolist() == [[2, 1, 0], [5, 4, 3]]
    assert out["pts"].tolist() == [[2.5, 0.5]]
    np.random.seed(0)
    seen = {T.RandomFlip(p=1.0, direction=["horizontal", "vertical"])(make_sample())["flip_direction"]
            for _ in range(20)}
    assert seen == {"horizontal", "vertical"}


@pytest.mark.parametrize("seed", range(6))
def test_affine_rotate_scale_shear_translate(seed):
    np.random.seed(seed)
    t = T.RandomAffine(rotate_degree_range=25, max_translate_ratio=0.05, scaling_ratio_range=(0.8, 1.2),
                       max_shear_degree=4, border_val=0, min_area_ratio=0.0, border_ratio=1.3)
    out = t(make_sample())
    assert out["img"].shape[:2] == (208, 260)
    # The box is the hull of the moved corners; the rasterized rectangle may differ by ~2 px.
    check_consistent(out, tol=2.5)


def test_affine_angle_list_turns_exactly():
    t = T.RandomAffine(rotate_degree_range=[90], rotate_range=False, border_val=0)
    sample = make_sample()
    sample["img"], sample["mask"] = sample["img"][:, 20:180], sample["mask"][:, 20:180]  # square 160 x 160
    sample["pts"] = sample["pts"] - np.float32([20, 0])
    sample["boxes"] = sample["boxes"] - np.float32([20, 0, 20, 0])
    out = t(sample)
    check_consistent(out, tol=1e-3)
    # Counter-clockwise as displayed: the top-left marker goes to the bottom-left.
    x, y = out["pts"][0]
    assert x < 80 and y > 80


def test_affine_interpolation_for_image_nearest_for_mask():
    sample = make_sample(with_photo=False)
    del sample["interpolation"]
    colors_before = len(np.unique(sample["img"].reshape(-1, 3), axis=0))
    out = T.RandomAffine(rotate_degree_range=(13, 13), border_val=0)(sample)
    assert set(np.unique(out["mask"])) <= LABELS | {0}
    assert len(np.unique(out["img"].reshape(-1, 3), axis=0)) > colors_before + 50, "linear blends the image"


def _boxes_sample(boxes, labels):
    return dict(img=np.zeros((100, 100, 3), np.uint8), img_fields=["img"], color_fields=["img"],
                boxes=np.float32(boxes), bbox_fields=["boxes"], labels=np.array(labels),
                label_fields={"boxes": ["labels"]})


def test_affine_filters_boxes_by_area_ratio_and_clips():
    # border_ratio 0.5 keeps the central 50 x 50: input x in [25, 75] maps to [0, 50].
    sample = _boxes_sample([[0, 0, 30, 30], [20, 20, 60, 60], [40, 40, 45, 45]], [1, 2, 3])
    out = T.RandomAffine(rotate_degree_range=0, border_ratio=0.5, min_bbox_size=2, min_area_ratio=0.2)(sample)
    assert out["labels"].tolist() == [2, 3]
    np.testing.assert_allclose(out["boxes"], [[0, 0, 35, 35], [15, 15, 20, 20]])

    kept = T.RandomAffine(rotate_degree_range=0, border_ratio=0.5, clip_border=False, min_area_ratio=0.0)(
        _boxes_sample([[20, 20, 60, 60], [80, 80, 90, 90]], [2, 9]))
    assert kept["labels"].tolist() == [2], "a box with nothing left inside is always dropped"
    np.testing.assert_allclose(kept["boxes"], [[-5, -5, 35, 35]])


def test_affine_filters_small_and_thin_boxes():
    sample = lambda: _boxes_sample([[10, 10, 13, 13], [10, 40, 90, 42], [20, 60, 50, 90]], [1, 2, 3])  # noqa: E731
    out = T.RandomAffine(rotate_degree_range=0, min_bbox_size=5, max_aspect_ratio=50)(sample())
    assert out["labels"].tolist() == [3]
    out = T.RandomAffine(rotate_degree_range=0, min_bbox_size=1, max_aspect_ratio=50)(sample())
    assert out["labels"].tolist() == [1, 2, 3]
    out = T.RandomAffine(rotate_degree_range=0, min_bbox_size=1, max_aspect_ratio=20)(sample())
    assert out["labels"].tolist() == [1, 3], "80 x 2 is more elongated than 20"
    # Zoom does not count as lost area: halving keeps a quarter of the area but everything of the box.
    out = T.RandomAffine(rotate_degree_range=0, scaling_ratio_range=(0.5, 0.5), min_bbox_size=0,
                         min_area_ratio=0.9, max_aspect_ratio=50)(sample())
    assert out["labels"].tolist() == [1, 2, 3]
    out = T.RandomAffine(rotate_degree_range=0, min_bbox_size=5, skip_filter=True)(sample())
    assert out["labels"].tolist() == [1, 2, 3], "skip_filter keeps every box that still overlaps"
    out = T.RandomAffine(rotate_degree_range=0, border_ratio=0.5, skip_filter=True)(sample())
    assert out["labels"].tolist() == [2, 3], "a box left outside goes even with skip_filter"


@pytest.mark.parametrize("kwargs, shape", [
    (dict(target_size=96), (96, 96)),
    (dict(target_size=96, is_padding=False), (77, 96)),
    (dict(target_size=(64, 200), keep_ratio=False), (64, 200)),
    (dict(target_size=(100, 90), keep_ratio=True), (100, 90)),
    (dict(target_size=320, interpolation=["INTER_AREA", "INTER_LINEAR"]), (320, 320)),
])
def test_resize_consistent(kwargs, shape):
    out = T.Resize(**kwargs)(make_sample())
    assert out["img"].shape[:2] == shape
    check_consistent(out, tol=1.6)


def test_resize_records_scale_and_pad_offset():
    out = T.Resize(target_size=100)(make_sample())
    assert out["ori_shape"] == (160, 200)
    assert out["scale"] == (0.5, 0.5)
    assert out["pad_offset"] == (10, 10, 0, 0)
    assert out["img"][:10].max() == 0, "padding fills 0 unless pad_value says otherwise"
    sample = make_sample()
    sample["pad_value"] = {"img": 7, "mask": 255}
    out = T.Resize(target_size=100)(sample)
    assert out["img"][0, 0].tolist() == [7, 7, 7] and out["mask"][0, 0] == 255


def test_random_resize_and_pad32():
    np.random.seed(1)
    t = T.RandomResize(max_edge_length=[96, 128], padding_size=160)
    sizes = set()
    for _ in range(12):
        out = t(make_sample())
        assert out["img"].shape[:2] == (160, 160)
        check_consistent(out, tol=1.6)
        sizes.add(max(round(200 * out["scale"][0]), round(160 * out["scale"][1])))
    assert sizes == {96, 128, 160}
    out = T.Pad32()(T.Resize(target_size=100, is_padding=False)(make_sample()))
    assert out["img"].shape[:2] == (96, 128) and out["pad_offset"] == (8, 8, 14, 14)
    check_consistent(out, tol=1.6)


def test_crop_consistent_and_clips_boxes():
    np.random.seed(3)
    t = T.RandomCrop(min_crop_ratio=0.0, max_crop_ratio=0.1, crop_step=0.05)
    for _ in range(5):
        out = t(make_sample())
        h, w = out["img"].shape[:2]
        assert 144 <= h <= 160 and 180 <= w <= 200
        check_consistent(out, tol=1e-6)
    sample = _boxes_sample([[0, 0, 100, 100], [0, 0, 5, 5]], [1, 2])
    np.random.seed(0)
    out = T.RandomCrop(min_crop_ratio=0.5, max_crop_ratio=0.5)(sample)
    h, w = out["img_shape"]
    assert (h, w) == (50, 50)
    np.testing.assert_allclose(out["boxes"][0], [0, 0, 50, 50])
    assert len(out["boxes"]) == len(out["labels"])


def test_seeded_pipeline_is_consistent_and_reproducible():
    spec = [dict(name="RandomFlip", direction=["horizontal", "vertical", "diagonal"], p=0.5),
            dict(name="RandomAffine", rotate_degree_range=15, scaling_ratio_range=(0.9, 1.1), border_val=0,
                 min_area_ratio=0.0, border_ratio=1.2),
            dict(name="RandomCrop", min_crop_ratio=0.0, max_crop_ratio=0.05, crop_step=0.05),
            dict(name="Resize", target_size=192), dict(name="Pad32")]
    pipe = T.build_transforms(spec)
    for seed in range(4):
        np.random.seed(seed)
        a = pipe(make_sample())
        np.random.seed(seed)
        b = pipe(make_sample())
        for key in ("img", "mask", "pts", "boxes"):
            np.testing.assert_array_equal(a[key], b[key])
        # Nearest everywhere keeps colors exact; markers far from the border survive the crop.
        check_consistent(a, tol=3.0)


def test_single_channel_masks_keep_their_axis_and_dtype():
    sample = make_sample()
    sample["mask"] = sample["mask"][..., None].astype(np.int64)
    out = T.RandomAffine(rotate_degree_range=10, border_val=0)(sample)
    assert out["mask"].shape[2:] == (1,) and out["mask"].dtype == np.int64
    out = T.Resize(target_size=64)(out)
    assert out["mask"].shape == (64, 64, 1) and out["mask"].dtype == np.int64


def test_spatial_does_not_modify_inputs_in_place():
    sample = make_sample()
    before = {k: sample[k].copy() for k in ("img", "mask", "pts", "boxes")}
    pipe = T.build_transforms([dict(name="RandomFlip", p=1.0), dict(name="RandomAffine", rotate_degree_range=10),
                               dict(name="RandomCrop", min_crop_ratio=0.1, max_crop_ratio=0.1),
                               dict(name="Resize", target_size=64), dict(name="Pad32")])
    views = {k: sample[k] for k in before}
    pipe(sample)
    for k, v in before.items():
        np.testing.assert_array_equal(views[k], v)


def test_boxes_and_points_only_results():
    out = T.RandomFlip(p=1.0)(dict(img_shape=(10, 20), boxes=np.float32([[0, 0, 5, 5]]), bbox_fields=["boxes"]))
    np.testing.assert_allclose(out["boxes"], [[15, 0, 20, 5]])
