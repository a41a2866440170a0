"""MosaicTransform with a tiny fake dataset: tiles, masks, boxes, points and labels stay together."""

import numpy as np
import pytest

import engine.transforms as T


def solid_sample(index: int, h: int = 40, w: int = 60) -> dict:
    """A solid-color image (color from the index) with a box, a corner-free point and a mask."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (10 + 20 * index, 200 - 15 * index, 7 * index)
    mask = np.full((h, w), index + 1, np.uint8)
    return dict(img=img, mask=mask, img_fields=["img"], mask_fields=["mask"], color_fields=["img"],
                boxes=np.float32([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]]), bbox_fields=["boxes"],
                pts=np.float32([[w / 2, h / 2]]), pts_fields=["pts"],
                labels=np.int64([index]), pt_ids=np.int64([100 + index]),
                label_fields={"boxes": ["labels"], "pts": ["pt_ids"]})


class FakeDataset:
    """The protocol MosaicTransform relies on: __len__ and get_results(index)."""

    def __init__(self, n: int = 10, sizes=None):
        self.n, self.sizes = n, sizes or {}
        self.calls = []

    def __len__(self):
        return self.n

    def get_results(self, index):
        self.calls.append(index)
        return solid_sample(index, *self.sizes.get(index, (40, 60)))


def index_of(color):
    return int(round((color[0] - 10) / 20))


@pytest.mark.parametrize("n, shape", [(4, (96, 96)), (9, (96, 96)), (3, (32, 96))])
def test_layouts_and_everything_lands_on_its_own_tile(n, shape):
    ds = FakeDataset(sizes={3: (80, 20), 5: (20, 90)})  # odd aspect ratios too
    t = T.MosaicTransform(dataset=ds, max_size=96, n=n, border_step=0.1)
    for seed in range(5):
        np.random.seed(seed)
        ds.calls.clear()
        out = t(solid_sample(9))
        img, mask = out["img"], out["mask"]
        assert img.shape[:2] == mask.shape == shape == out["img_shape"]
        assert len(ds.calls) == n - 1 and out["mosaic_indices"] == ds.calls
        used = {9} | set(ds.calls)
        # The mask tells which sample each pixel came from; the image agrees everywhere.
        for label in np.unique(mask):
            colors = np.unique(img[mask == label], axis=0)
            assert len(colors) == 1 and index_of(colors[0]) == label - 1
        assert set(np.unique(mask)) <= {i + 1 for i in used}
        assert len(out["boxes"]) == len(out["labels"]) and len(out["pts"]) == len(out["pt_ids"])
        for box, label in zip(out["boxes"], out["labels"]):
            x1, y1, x2, y2 = box
            assert x2 > x1 and y2 > y1
            inner = mask[int(np.ceil(y1)):int(y2), int(np.ceil(x1)):int(x2)]
            assert inner.size == 0 or (inner == label + 1).all(), "a box covers only its own sample"
        for (x, y), pid in zip(out["pts"], out["pt_ids"]):
            assert mask[int(y), int(x)] == pid - 100 + 1, "a point sits on its own sample"


def test_regular_grid_keeps_every_center_and_label():
    ds = FakeDataset()
    np.random.seed(0)
    out = T.MosaicTransform(dataset=ds, max_size=120, n=4, border_step=0.0)(solid_sample(9))
    # 60 x 60 cells; 40 x 60 samples scale by 1.5 to 60 x 90 and lose 30 px of width. Tile 0
    # (top left) keeps its right part, the side facing the center: x -> 1.5 x - 30.
    assert sorted(out["labels"].tolist()) == sorted([9] + ds.calls)
    first_box = out["boxes"][list(out["labels"]).index(9)]
    np.testing.assert_allclose(first_box, [0, 15, 37.5, 45])  # [22.5, 67.5] - 30, clipped to the cell
    np.testing.assert_allclose(out["pts"][list(out["pt_ids"]).index(109)], [15, 30])
    assert out["img"][0, 59].tolist() == solid_sample(9)["img"][0, 0].tolist()
    assert out["img"][0, 60].tolist() == solid_sample(ds.calls[0])["img"][0, 0].tolist()


def test_same_seed_same_mosaic_and_p0_identity():
    ds = FakeDataset()
    t = T.MosaicTransform(dataset=ds, max_size=64, p=0.5)
    outs = []
    for _ in range(2):
        np.random.seed(11)
        outs.append([t(solid_sample(9))["img"] for _ in range(4)])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    sample = solid_sample(9)
    assert T.MosaicTransform(dataset=ds, max_size=64, p=0.0)(sample)["img"].shape == (40, 60, 3)


def test_missing_field_in_dataset_sample_is_a_clear_error():
    class Bare(FakeDataset):
        def get_results(self, index):
            r = super().get_results(index)
            del r["mask"]
            return r
    with pytest.raises(KeyError, match="lacks 'mask'"):
        T.MosaicTransform(dataset=Bare(), max_size=64)(solid_sample(9))


def test_mosaic_then_spatial_pipeline():
    pipe = T.build_transforms([dict(name="MosaicTransform", max_size=128),
                               dict(name="RandomAffine", rotate_degree_range=10, border_val=0, min_area_ratio=0.0),
                               dict(name="Resize", target_size=64), dict(name="Normalize")], dataset=FakeDataset())
    np.random.seed(2)
    out = pipe(solid_sample(9))
    assert out["img"].shape == (64, 64, 3) and out["img"].dtype == np.float32
    assert out["mask"].dtype == np.uint8 and len(out["boxes"]) == len(out["labels"])
