"""Pure geometric kernels on image arrays, keypoints and boxes (no results dict, no RNG).

Points and boxes use continuous coordinates (pixel (r, c) covers [c, c+1) x [r, r+1)),
see :mod:`engine.transforms.results`. Affine matrices are 3 x 3 and act on those
coordinates; :func:`warp_image` converts them to the pixel-index convention cv2 uses.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Tuple, Union

import cv2
import numpy as np

FLIP_CODES = {"horizontal": 1, "vertical": 0, "diagonal": -1}
Border = Union[float, Sequence[float]]

# dtypes cv2's geometric functions do not take; they travel as a supported one and back.
_CV_STAND_IN = {np.dtype(bool): np.uint8, np.dtype(np.int64): np.int32, np.dtype(np.uint32): np.int32,
                np.dtype(np.uint64): np.int32, np.dtype(np.float16): np.float32}


def _cv_apply(fn: Callable[[np.ndarray], np.ndarray], img: np.ndarray) -> np.ndarray:
    """Run a cv2 call on any dtype and channel count, keeping both as they came.

    cv2 drops a trailing channel axis of size 1 and fills at most 4 channels with a border
    value, so single-channel arrays get their axis back and wide arrays go in slices of 4.
    """
    stand_in = _CV_STAND_IN.get(img.dtype)
    src = img.astype(stand_in) if stand_in is not None else img
    if src.ndim == 3 and src.shape[2] > 4:
        out = np.concatenate([_cv_apply(fn, src[..., i:i + 4]) for i in range(0, src.shape[2], 4)], axis=2)
    else:
        out = fn(src)
        if src.ndim == 3 and out.ndim == 2:
            out = out[..., None]
    return out.astype(img.dtype) if stand_in is not None else out


def _border(value: Border, img: np.ndarray) -> Tuple[float, ...]:
    """cv2 reads a bare number as (v, 0, 0, 0): spell it out per channel."""
    if np.ndim(value) == 0:
        return (float(value),) * 4
    values = tuple(float(v) for v in value)
    return values + (0.0,) * (4 - len(values)) if len(values) < 4 else values[:4]


def flip_image(img: np.ndarray, direction: str) -> np.ndarray:
    """Flip horizontally, vertically, or both ('diagonal': a 180 degree turn, as in mmdet)."""
    return _cv_apply(lambda a: cv2.flip(a, FLIP_CODES[direction]), img)


def flip_points(pts: np.ndarray, hw: Tuple[int, int], direction: str) -> np.ndarray:
    out = pts.copy()
    if direction in ("horizontal", "diagonal"):
        out[:, 0] = hw[1] - pts[:, 0]
    if direction in ("vertical", "diagonal"):
        out[:, 1] = hw[0] - pts[:, 1]
    return out


def flip_boxes(boxes: np.ndarray, hw: Tuple[int, int], direction: str) -> np.ndarray:
    out = boxes.copy()
    if direction in ("horizontal", "diagonal"):
        out[:, 0], out[:, 2] = hw[1] - boxes[:, 2], hw[1] - boxes[:, 0]
    if direction in ("vertical", "diagonal"):
        out[:, 1], out[:, 3] = hw[0] - boxes[:, 3], hw[0] - boxes[:, 1]
    return out


def affine_matrix(in_hw: Tuple[int, int], out_hw: Tuple[int, int], *, angle: float = 0.0,
                  scale: float = 1.0, shear: Tuple[float, float] = (0.0, 0.0),
                  translate: Tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """3 x 3 matrix that scales, rotates and shears about the input's center.

    The input center lands on the output center moved by ``translate`` (pixels). Positive
    ``angle`` (degrees) turns the picture counter-clockwise as displayed; ``shear`` is
    (x, y) in degrees.
    """
    (ih, iw), (oh, ow) = in_hw, out_hw
    a = math.radians(angle)
    rot = np.array([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0], [0, 0, 1]])
    shr = np.array([[1, math.tan(math.radians(shear[0])), 0], [math.tan(math.radians(shear[1])), 1, 0], [0, 0, 1]])
    scl = np.diag([scale, scale, 1.0])
    to_origin = np.array([[1, 0, -iw / 2], [0, 1, -ih / 2], [0, 0, 1]])
    to_out = np.array([[1, 0, ow / 2 + translate[0]], [0, 1, oh / 2 + translate[1]], [0, 0, 1]])
    return to_out @ shr @ rot @ scl @ to_origin


def warp_image(img: np.ndarray, matrix: np.ndarray, out_hw: Tuple[int, int], interpolation: int,
               border_value: Border) -> np.ndarray:
    """Warp by a continuous-coordinate 3 x 3 matrix into an ``out_hw`` canvas."""
    # cv2 maps pixel indices (centers at integers): conjugate by the half-pixel shift.
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    m = (np.linalg.inv(half) @ matrix @ half)[:2]
    size = (int(out_hw[1]), int(out_hw[0]))
    return _cv_apply(lambda a: cv2.warpAffine(a, m, size, flags=interpolation, borderMode=cv2.BORDER_CONSTANT,
                                              borderValue=_border(border_value, a)), img)


def transform_points(pts: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return (pts @ matrix[:2, :2].T + matrix[:2, 2]).astype(np.float32)


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The axis-aligned hull of each box's four moved corners (rotation enlarges boxes)."""
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)
    moved = transform_points(corners, matrix).reshape(-1, 4, 2)
    return np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1).astype(np.float32)


def resize_image(img: np.ndarray, hw: Tuple[int, int], interpolation: int) -> np.ndarray:
    if img.shape[:2] == tuple(hw):
        return img
    return _cv_apply(lambda a: cv2.resize(a, (int(hw[1]), int(hw[0])), interpolation=interpolation), img)


def pad_image(img: np.ndarray, top: int, bottom: int, left: int, right: int, value: Border) -> np.ndarray:
    return _cv_apply(lambda a: cv2.copyMakeBorder(a, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                                  value=_border(value, a)), img)


def clip_boxes(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    out = boxes.copy()
    np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
    return out


def boxes_inside(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """True for boxes with some area inside the ``h`` x ``w`` image."""
    x1, y1 = np.maximum(boxes[:, 0], 0), np.maximum(boxes[:, 1], 0)
    x2, y2 = np.minimum(boxes[:, 2], w), np.minimum(boxes[:, 3], h)
    return (x2 > x1) & (y2 > y1)


def box_filter(before: np.ndarray, after: np.ndarray, *, min_size: float, min_area_ratio: float,
               max_aspect_ratio: float) -> np.ndarray:
    """Which moved boxes are still worth a label.

    ``before`` should already be scaled by the transform's zoom, so the area ratio measures
    what was cut off (or sheared away), not the zoom itself.
    """
    w, h = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    area_before = (before[:, 2] - before[:, 0]) * (before[:, 3] - before[:, 1])
    aspect = np.maximum(w / np.maximum(h, 1e-12), h / np.maximum(w, 1e-12))
    return (w > min_size) & (h > min_size) & (w * h > min_area_ratio * area_before) & (aspect < max_aspect_ratio)
