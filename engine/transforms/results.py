"""Reading and updating the ``results`` dict that flows through a pipeline.

The convention (the seed's, plus masks and aligned labels)::

    img_fields     keys of image-like arrays moved by spatial transforms ('img', 'mask', ...)
    color_fields   keys changed by pixel transforms (only these)
    mask_fields    keys of masks: moved with nearest interpolation, never color-changed
    pts_fields     keys of N x 2 float arrays of (x, y) keypoints
    bbox_fields    keys of N x 4 float arrays of (x1, y1, x2, y2) boxes
    label_fields   optional {box-or-points key: [keys of arrays aligned with it]}; when a
                   transform drops boxes (or mosaic drops points) the aligned rows go too
    pad_value      optional {key: value} filled where a spatial transform uncovers pixels
    interpolation  optional {key: cv2 name such as 'INTER_CUBIC'} overriding the transform's

and the outputs ``img_shape`` (h, w), ``ori_shape``, ``pad_offset`` (top, bottom, left,
right) and ``scale`` (w, h).

Coordinates are continuous: pixel (row r, column c) covers [c, c+1) x [r, r+1), so its
center is (c + 0.5, r + 0.5) and a w-wide image spans x in [0, w]. With that convention a
horizontal flip is exactly ``x -> w - x`` for boxes and points alike.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from engine.transforms import geometry as G
from engine.transforms.base import INTERPOLATIONS


def image_keys(results: dict) -> List[str]:
    """Every array a spatial transform moves: ``img_fields`` then masks not already listed."""
    keys = list(results.get("img_fields", ()))
    masks = results.get("mask_fields")
    if masks:  # most samples have none: no second pass (these helpers run several times a sample)
        keys += [k for k in masks if k not in keys]
    return keys


def is_mask(results: dict, key: str) -> bool:
    return key in results.get("mask_fields", ())


def color_keys(results: dict) -> List[str]:
    """Keys pixel transforms change: ``color_fields`` minus masks (a mask is never recolored)."""
    masks = results.get("mask_fields")
    keys = results.get("color_fields", ())
    return [k for k in keys if k not in masks] if masks else list(keys)


def interpolation_for(results: dict, key: str, default: int) -> int:
    """The per-key override, else nearest for masks (labels must not blend), else ``default``."""
    override = results.get("interpolation")
    if isinstance(override, dict) and key in override:
        name = override[key]
        if name not in INTERPOLATIONS:
            raise ValueError(f"results['interpolation'][{key!r}]={name!r} is not one of {list(INTERPOLATIONS)}")
        return INTERPOLATIONS[name]
    return INTERPOLATIONS["INTER_NEAREST"] if is_mask(results, key) else default


def pad_value_for(results: dict, key: str, default: float = 0) -> float:
    pad = results.get("pad_value")
    if isinstance(pad, dict) and key in pad:
        return pad[key]
    return 0 if is_mask(results, key) else default


def image_hw(results: dict) -> Tuple[int, int]:
    """(h, w) of the images, checked to agree; ``img_shape`` when there are no image arrays."""
    keys = image_keys(results)
    if not keys:
        if "img_shape" not in results:
            raise KeyError("results has no img_fields/mask_fields arrays and no 'img_shape'")
        return tuple(int(v) for v in results["img_shape"][:2])
    hw = results[keys[0]].shape[:2]
    if any(results[k].shape[:2] != hw for k in keys[1:]):
        shapes = {k: results[k].shape[:2] for k in keys}
        raise ValueError(f"image arrays of one sample differ in size: {shapes}")
    return int(hw[0]), int(hw[1])


def as_boxes(results: dict, key: str) -> np.ndarray:
    boxes = np.asarray(results[key], dtype=np.float32).reshape(-1, 4)
    return boxes


def as_points(results: dict, key: str) -> np.ndarray:
    return np.asarray(results[key], dtype=np.float32).reshape(-1, 2)


def keep_rows(results: dict, key: str, keep: np.ndarray) -> None:
    """Drop the rows of ``results[key]`` (and of its aligned label arrays) where ``keep`` is False."""
    if keep.all():
        return
    results[key] = results[key][keep]
    for aligned in (results.get("label_fields") or {}).get(key, ()):
        results[aligned] = np.asarray(results[aligned])[keep]


def finish_boxes(results: dict, key: str, boxes: np.ndarray, hw: Tuple[int, int], clip: bool) -> None:
    """Store moved boxes: clip them when asked, and drop those left with no area inside the image."""
    h, w = hw
    if clip:
        boxes = G.clip_boxes(boxes, h, w)
    results[key] = boxes
    keep_rows(results, key, G.boxes_inside(boxes, h, w))


def input_hw(results: dict) -> Tuple[int, int]:
    """(h, w) before a spatial transform; records ``ori_shape`` the first time one runs."""
    hw = image_hw(results)
    results.setdefault("ori_shape", hw)
    return hw


def pad(results: dict, top: int, bottom: int, left: int, right: int, default_value: float = 0) -> None:
    """Pad every image array and shift points and boxes; ``pad_offset`` accumulates."""
    h, w = input_hw(results)
    results.setdefault("pad_offset", (0, 0, 0, 0))
    if top == bottom == left == right == 0:
        results["img_shape"] = (h, w)
        return
    for key in image_keys(results):
        results[key] = G.pad_image(results[key], top, bottom, left, right,
                                   pad_value_for(results, key, default_value))
    shift = np.array([left, top], dtype=np.float32)
    for key in results.get("pts_fields", ()):
        results[key] = as_points(results, key) + shift
    for key in results.get("bbox_fields", ()):
        results[key] = as_boxes(results, key) + np.tile(shift, 2)
    t, b, l, r = results["pad_offset"]
    results["pad_offset"] = (t + top, b + bottom, l + left, r + right)
    results["img_shape"] = (h + top + bottom, w + left + right)
