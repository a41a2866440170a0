"""Mixing transforms: several samples of the dataset into one."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Tuple

import cv2
import numpy as np

from engine.transforms import geometry as G
from engine.transforms import results as R
from engine.transforms.base import BaseTransform, check_number, config_error
from engine.transforms.registry import BUILD_TRANSFORMER_REGISTRY

_GRIDS: Dict[int, Tuple[int, int]] = {3: (1, 3), 4: (2, 2), 9: (3, 3)}


@BUILD_TRANSFORMER_REGISTRY.register()
class MosaicTransform(BaseTransform):
    """Tile ``n`` samples (1 x 3, 2 x 2 or 3 x 3) into one image, moving their masks, points and boxes.

    The current sample is the first tile; the other ``n - 1`` are drawn uniformly from
    ``dataset``. The mosaic's longest side is ``max_size``; its cells are nominally square
    (``max_size / max(rows, cols)``), and every split line is moved by a random multiple of
    ``border_step`` cells, up to a quarter cell either way (0 keeps a regular grid). Each
    sample is scaled to cover its cell and cropped, keeping the side that faces the mosaic
    center, so the samples meet there as in YOLO's mosaic.

    Boxes are clipped to their cell and dropped when nothing is left; points that fall
    outside their cell are dropped (they would sit on another sample's content). Arrays
    aligned with boxes or points (class labels) must be listed in ``label_fields`` to be
    merged along with them. Put the mosaic first in a pipeline: transforms before it only
    see the current sample.

    The dataset protocol (the data builder passes the dataset as ``dataset=``):
    ``len(dataset)`` and ``dataset.get_results(index) -> dict``, the sample's
    *un-transformed* results dict (same field lists as the current sample).
    """

    def __init__(self, dataset: Any = None, max_size: int = 640, p: float = 1.0, n: int = 4,
                 border_step: float = 0.1) -> None:
        super().__init__(p)
        if dataset is None or not hasattr(dataset, "__len__") or not callable(getattr(dataset, "get_results", None)):
            raise config_error(self, "dataset", dataset,
                               "an object with __len__ and get_results(index) (the data builder passes the dataset)")
        self.dataset = dataset
        if n not in _GRIDS:
            raise config_error(self, "n", n, f"one of {sorted(_GRIDS)} (1 x 3, 2 x 2 or 3 x 3 tiles)")
        self.n = n
        self.max_size = check_number(self, "max_size", max_size, 2 * max(_GRIDS[n]), integer=True)
        self.border_step = check_number(self, "border_step", border_step, 0.0, 0.25)

    def _splits(self, cells: int, cell: float) -> List[int]:
        """Cell edges along one axis: a regular grid whose inner lines move by whole ``border_step`` s."""
        steps = int(math.floor(0.25 / self.border_step + 1e-9)) if self.border_step > 0 else 0
        edges = [0]
        for k in range(1, cells):
            shift = np.random.randint(-steps, steps + 1) * self.border_step if steps else 0.0
            edges.append(int(round((k + shift) * cell)))
        return edges + [int(round(cells * cell))]

    def transform(self, results: dict) -> dict:
        R.input_hw(results)
        rows, cols = _GRIDS[self.n]
        cell = self.max_size / max(rows, cols)
        indices = [int(np.random.randint(len(self.dataset))) for _ in range(self.n - 1)]
        samples = [results] + [self.dataset.get_results(i) for i in indices]
        ys, xs = self._splits(rows, cell), self._splits(cols, cell)
        out_hw = (ys[-1], xs[-1])
        tiles = []
        for t, sample in enumerate(samples):
            r, c = divmod(t, cols)
            tiles.append(self._tile(results, sample, (ys[r], ys[r + 1], xs[c], xs[c + 1]),
                                    (_anchor(r, rows), _anchor(c, cols))))
        for key in R.image_keys(results):
            results[key] = _paste(results, key, [tile[key] for tile in tiles], out_hw)
        for key in list(results.get("pts_fields", ())) + list(results.get("bbox_fields", ())):
            for name in [key] + list((results.get("label_fields") or {}).get(key, ())):
                results[name] = np.concatenate([tile[name] for tile in tiles], axis=0)
        results["img_shape"] = out_hw
        results["mosaic_indices"] = indices
        for stale in ("scale", "pad_offset", "flip_direction"):  # described the first sample alone
            results.pop(stale, None)
        return results

    def _tile(self, fields: dict, sample: dict, box: Tuple[int, int, int, int], anchor: Tuple[float, float]) -> dict:
        """One sample scaled to cover its cell and cropped; arrays in mosaic coordinates."""
        y0, y1, x0, x1 = box
        arrays = {key: _field(sample, key) for key in R.image_keys(fields)}
        h, w = next(iter(arrays.values())).shape[:2] if arrays else R.image_hw(sample)
        s = max((y1 - y0) / h, (x1 - x0) / w)
        new_h, new_w = max(y1 - y0, int(math.ceil(h * s))), max(x1 - x0, int(math.ceil(w * s)))
        oy, ox = int(anchor[0] * (new_h - (y1 - y0))), int(anchor[1] * (new_w - (x1 - x0)))
        tile: Dict[str, np.ndarray] = {}
        for key, img in arrays.items():
            img = G.resize_image(img, (new_h, new_w), R.interpolation_for(fields, key, cv2.INTER_LINEAR))
            tile[key] = (img[oy:oy + y1 - y0, ox:ox + x1 - x0], box)
        scale = np.float32([new_w / w, new_h / h])
        shift = np.float32([x0 - ox, y0 - oy])
        labels = fields.get("label_fields") or {}
        for key in fields.get("pts_fields", ()):
            pts = np.asarray(_field(sample, key), dtype=np.float32).reshape(-1, 2) * scale + shift
            keep = (pts[:, 0] >= x0) & (pts[:, 0] < x1) & (pts[:, 1] >= y0) & (pts[:, 1] < y1)
            _keep(tile, sample, key, pts, keep, labels)
        for key in fields.get("bbox_fields", ()):
            boxes = np.asarray(_field(sample, key), dtype=np.float32).reshape(-1, 4) * np.tile(scale, 2) \
                + np.tile(shift, 2)
            boxes = np.clip(boxes, [x0, y0, x0, y0], [x1, y1, x1, y1]).astype(np.float32)
            _keep(tile, sample, key, boxes, (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]), labels)
        return tile


def _anchor(index: int, count: int) -> float:
    """Which part of an oversized sample stays: 1 keeps its end (it faces the center), 0 its start."""
    middle = (count - 1) / 2
    return 1.0 if index < middle else 0.0 if index > middle else 0.5


def _field(sample: dict, key: str) -> Any:
    if key not in sample:
        raise KeyError(f"MosaicTransform: a sample from dataset.get_results lacks {key!r}, "
                       f"which the current sample lists in its fields")
    return sample[key]


def _keep(tile: dict, sample: dict, key: str, values: np.ndarray, keep: np.ndarray, labels: dict) -> None:
    tile[key] = values[keep]
    for name in labels.get(key, ()):
        tile[name] = np.asarray(_field(sample, name))[keep]


def _paste(results: dict, key: str, pieces: List[Tuple[np.ndarray, Tuple[int, int, int, int]]],
           out_hw: Tuple[int, int]) -> np.ndarray:
    first = pieces[0][0]
    canvas = np.full(out_hw + first.shape[2:], R.pad_value_for(results, key, 0), dtype=first.dtype)
    for img, (y0, y1, x0, x1) in pieces:
        if img.shape[2:] != first.shape[2:]:
            raise ValueError(f"MosaicTransform: results[{key!r}] of the mosaic's samples differ in channels: "
                             f"{first.shape} vs {img.shape}")
        canvas[y0:y1, x0:x1] = img
    return canvas
