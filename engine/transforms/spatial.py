"""Spatial transforms: move images, masks, keypoints and boxes together.

Images use the transform's interpolation (or ``results['interpolation'][key]``), masks
use nearest so label values never blend, and points/boxes go through the very same
geometric map (continuous coordinates, see :mod:`engine.transforms.results`).

Keypoints are never clipped or dropped here: a point that leaves the image keeps its
(off-image) coordinates, so point i still means landmark i. ``clip_border`` acts on
boxes; transforms that can cut content away (``RandomAffine``, ``RandomCrop``) also drop
boxes left with no area inside the image, along with their ``label_fields`` rows.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from engine.transforms import geometry as G
from engine.transforms import results as R
from engine.transforms.base import (
    BaseTransform, check_bool, check_choices, check_interpolation, check_number, check_size, choice,
    config_error, to_range, uniform,
)
from engine.transforms.registry import BUILD_TRANSFORMER_REGISTRY

Size = Union[int, Tuple[int, int]]


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomFlip(BaseTransform):
    """Flip ``horizontal``, ``vertical`` or ``diagonal`` (both axes); a list picks one per sample.

    Records the direction used in ``results['flip_direction']``.
    """

    def __init__(self, p: float = 0.5, direction: Union[str, Sequence[str]] = "horizontal") -> None:
        super().__init__(p)
        self.direction = check_choices(self, "direction", direction, list(G.FLIP_CODES))

    def transform(self, results: dict) -> dict:
        direction = choice(self.direction)
        hw = R.input_hw(results)
        for key in R.image_keys(results):
            results[key] = G.flip_image(results[key], direction)
        for key in results.get("pts_fields", ()):
            results[key] = G.flip_points(R.as_points(results, key), hw, direction)
        for key in results.get("bbox_fields", ()):
            results[key] = G.flip_boxes(R.as_boxes(results, key), hw, direction)
        results["flip_direction"] = direction
        results["img_shape"] = hw
        return results


class _ResizeBase(BaseTransform):
    """Resize to a target (keeping the aspect ratio or not), then optionally pad to a fixed size."""

    def __init__(self, interpolation: Union[str, Sequence[str]], keep_ratio: bool, clip_border: bool) -> None:
        super().__init__(1.0)
        self.interpolation = interpolation
        self._interpolations = check_interpolation(self, "interpolation", interpolation)
        self.keep_ratio = check_bool(self, "keep_ratio", keep_ratio)
        self.clip_border = check_bool(self, "clip_border", clip_border)

    def _resize(self, results: dict, target: Tuple[int, int], pad_to: Optional[Tuple[int, int]]) -> dict:
        h, w = R.input_hw(results)
        if self.keep_ratio:
            s = min(target[0] / h, target[1] / w)
            new_h, new_w = max(1, int(round(h * s))), max(1, int(round(w * s)))
        else:
            new_h, new_w = target
        interpolation = choice(self._interpolations)
        for key in R.image_keys(results):
            results[key] = G.resize_image(results[key], (new_h, new_w), R.interpolation_for(results, key, interpolation))
        sx, sy = new_w / w, new_h / h
        for key in results.get("pts_fields", ()):
            results[key] = R.as_points(results, key) * np.float32([sx, sy])
        for key in results.get("bbox_fields", ()):
            results[key] = R.as_boxes(results, key) * np.float32([sx, sy, sx, sy])
        results["scale"] = (sx, sy)
        results["img_shape"] = (new_h, new_w)
        if pad_to is not None:
            dh, dw = max(pad_to[0] - new_h, 0), max(pad_to[1] - new_w, 0)
            R.pad(results, dh // 2, dh - dh // 2, dw // 2, dw - dw // 2)
        if self.clip_border:
            out_h, out_w = results["img_shape"]
            for key in results.get("bbox_fields", ()):
                results[key] = G.clip_boxes(results[key], out_h, out_w)
        return results


@BUILD_TRANSFORMER_REGISTRY.register()
class Resize(_ResizeBase):
    """Resize to ``target_size`` (int: square; or (h, w)).

    With ``keep_ratio`` the image is scaled to fit inside the target (an int target puts
    the longest side at ``target_size``) and, with ``is_padding``, centered on a canvas of
    the target size (``pad_offset`` records where). ``interpolation`` is a cv2 name, or a
    list to pick from per sample. ``scale`` records (w, h) scale factors.
    """

    def __init__(self, target_size: Size, interpolation: Union[str, Sequence[str]] = "INTER_LINEAR",
                 keep_ratio: bool = True, is_padding: bool = True, clip_border: bool = True) -> None:
        super().__init__(interpolation, keep_ratio, clip_border)
        self.target_size = check_size(self, "target_size", target_size)
        self.is_padding = check_bool(self, "is_padding", is_padding)

    def transform(self, results: dict) -> dict:
        pad_to = self.target_size if self.keep_ratio and self.is_padding else None
        return self._resize(results, self.target_size, pad_to)


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomResize(_ResizeBase):
    """Resize to a size picked from ``max_edge_length``, then pad to ``padding_size`` square.

    The candidates are ``max_edge_length`` (int or list) plus ``padding_size`` itself, as
    in the seed; with ``keep_ratio`` the candidate is the longest side, otherwise the side
    of a square. Padding (centered) keeps the output size fixed for batching; a
    ``padding_size`` of None skips it.
    """

    def __init__(self, max_edge_length: Union[int, Sequence[int]], padding_size: Optional[int] = None,
                 interpolation: Union[str, Sequence[str]] = "INTER_LINEAR", keep_ratio: bool = True,
                 clip_border: bool = True) -> None:
        super().__init__(interpolation, keep_ratio, clip_border)
        lengths = [max_edge_length] if not isinstance(max_edge_length, (list, tuple)) else list(max_edge_length)
        self.padding_size = None if padding_size is None else check_size(self, "padding_size", padding_size)[0]
        top = self.padding_size or np.inf
        if not lengths:
            raise config_error(self, "max_edge_length", max_edge_length, "a positive int or a non-empty list of them")
        self.max_edge_length = sorted({check_number(self, "max_edge_length", v, 1, top, integer=True) for v in lengths}
                                      | ({self.padding_size} if self.padding_size else set()))

    def transform(self, results: dict) -> dict:
        edge = choice(self.max_edge_length)
        pad_to = None if self.padding_size is None else (self.padding_size, self.padding_size)
        return self._resize(results, (edge, edge), pad_to)


@BUILD_TRANSFORMER_REGISTRY.register()
class Pad32(BaseTransform):
    """Pad (centered, with ``pad_value`` or 0) so height and width are multiples of 32."""

    def __init__(self) -> None:
        super().__init__(1.0)

    def transform(self, results: dict) -> dict:
        h, w = R.input_hw(results)
        dh, dw = -h % 32, -w % 32
        R.pad(results, dh // 2, dh - dh // 2, dw // 2, dw - dw // 2)
        return results


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomCrop(BaseTransform):
    """Cut a random window whose sides lose a fraction from ``min_crop_ratio..max_crop_ratio``.

    As in the seed, the ratios are the part *removed* (0.1 keeps 90% of a side), drawn
    for height and width independently from the grid ``min_crop_ratio, +crop_step, ...,
    max_crop_ratio``. Boxes are shifted, clipped with ``clip_border``, and dropped when
    nothing of them is left inside.
    """

    def __init__(self, min_crop_ratio: float, max_crop_ratio: float, crop_step: float = 0.1, p: float = 1.0,
                 clip_border: bool = True) -> None:
        super().__init__(p)
        self.min_crop_ratio = check_number(self, "min_crop_ratio", min_crop_ratio, 0.0, 0.99)
        self.max_crop_ratio = check_number(self, "max_crop_ratio", max_crop_ratio, self.min_crop_ratio, 0.99)
        self.crop_step = check_number(self, "crop_step", crop_step, 1e-6, 1.0)
        self.clip_border = check_bool(self, "clip_border", clip_border)
        count = int(math.floor((self.max_crop_ratio - self.min_crop_ratio) / self.crop_step + 1e-9)) + 1
        self._ratios = [self.min_crop_ratio + i * self.crop_step for i in range(count)]

    def transform(self, results: dict) -> dict:
        h, w = R.input_hw(results)
        new_h = max(1, int(round(h * (1 - choice(self._ratios)))))
        new_w = max(1, int(round(w * (1 - choice(self._ratios)))))
        y1 = np.random.randint(0, h - new_h + 1) if new_h < h else 0
        x1 = np.random.randint(0, w - new_w + 1) if new_w < w else 0
        for key in R.image_keys(results):
            results[key] = results[key][y1:y1 + new_h, x1:x1 + new_w]
        shift = np.float32([x1, y1])
        for key in results.get("pts_fields", ()):
            results[key] = R.as_points(results, key) - shift
        for key in results.get("bbox_fields", ()):
            R.finish_boxes(results, key, R.as_boxes(results, key) - np.tile(shift, 2), (new_h, new_w),
                           self.clip_border)
        results["img_shape"] = (new_h, new_w)
        return results


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomAffine(BaseTransform):
    """Rotate, scale, shear and translate about the image center in one warp.

    Args:
        rotate_degree_range: with ``rotate_range`` True, degrees drawn uniformly from this
            range (a number x means [-x, x]); with ``rotate_range`` False, a list of angles
            to pick from (e.g. [0, 90, 180, 270]). Positive turns counter-clockwise.
        rotate_range: see above (the seed's switch between a range and a list).
        max_translate_ratio: shift of up to this fraction of the width/height, each way.
        scaling_ratio_range: zoom range (a number x means [1-x, 1+x]).
        max_shear_degree: x and y shear drawn from [-max, max] degrees.
        p: probability of applying.
        border_val: fill of uncovered image pixels (number or per channel); masks use
            ``results['pad_value']`` or 0.
        clip_border: clip boxes to the image.
        min_bbox_size, min_area_ratio, max_aspect_ratio: moved boxes narrower or lower than
            ``min_bbox_size`` pixels, keeping less than ``min_area_ratio`` of their
            (zoom-adjusted) area, or more elongated than ``max_aspect_ratio`` are dropped.
        border_ratio: output size as a multiple of the input size (the image stays centered;
            > 1 leaves room for rotated corners).
        skip_filter: keep every box that still overlaps the image (no size/area/aspect rules).
        interpolation: cv2 name (or list to pick from) for images.
    """

    def __init__(self, rotate_degree_range: Any = (-10, 10), rotate_range: bool = True,
                 max_translate_ratio: float = 0.0, scaling_ratio_range: Any = (1.0, 1.0),
                 max_shear_degree: float = 0.0, p: float = 1.0, border_val: Any = 114, clip_border: bool = True,
                 min_bbox_size: float = 2, min_area_ratio: float = 0.2, max_aspect_ratio: float = 20,
                 border_ratio: float = 1.0, skip_filter: bool = False,
                 interpolation: Union[str, Sequence[str]] = "INTER_LINEAR") -> None:
        super().__init__(p)
        self.rotate_range = check_bool(self, "rotate_range", rotate_range)
        if self.rotate_range:
            self.rotate_degree_range = to_range(self, "rotate_degree_range", rotate_degree_range, center=0.0)
        else:
            angles = rotate_degree_range if isinstance(rotate_degree_range, (list, tuple)) else [rotate_degree_range]
            if not angles:
                raise config_error(self, "rotate_degree_range", rotate_degree_range, "a non-empty list of angles")
            self.rotate_degree_range = tuple(check_number(self, "rotate_degree_range", a) for a in angles)
        self.max_translate_ratio = check_number(self, "max_translate_ratio", max_translate_ratio, 0.0, 1.0)
        self.scaling_ratio_range = to_range(self, "scaling_ratio_range", scaling_ratio_range, bounds=(1e-6, np.inf))
        self.max_shear_degree = check_number(self, "max_shear_degree", max_shear_degree, 0.0, 89.0)
        self.border_val = border_val
        if not all(isinstance(v, (int, float)) for v in np.atleast_1d(border_val).tolist()):
            raise config_error(self, "border_val", border_val, "a number or a list of numbers (one per channel)")
        self.clip_border = check_bool(self, "clip_border", clip_border)
        self.min_bbox_size = check_number(self, "min_bbox_size", min_bbox_size, 0.0)
        self.min_area_ratio = check_number(self, "min_area_ratio", min_area_ratio, 0.0)
        self.max_aspect_ratio = check_number(self, "max_aspect_ratio", max_aspect_ratio, 1.0)
        self.border_ratio = check_number(self, "border_ratio", border_ratio, 1e-3)
        self.skip_filter = check_bool(self, "skip_filter", skip_filter)
        self.interpolation = interpolation
        self._interpolations = check_interpolation(self, "interpolation", interpolation)

    def _draw(self, h: int, w: int) -> Tuple[float, float, Tuple[float, float], Tuple[float, float]]:
        angle = uniform(self.rotate_degree_range) if self.rotate_range else choice(self.rotate_degree_range)
        scale = uniform(self.scaling_ratio_range)
        shear_range = (-self.max_shear_degree, self.max_shear_degree)
        shear = (uniform(shear_range), uniform(shear_range))
        move = (-self.max_translate_ratio, self.max_translate_ratio)
        translate = (uniform(move) * w, uniform(move) * h)
        return angle, scale, shear, translate

    def transform(self, results: dict) -> dict:
        h, w = R.input_hw(results)
        out_hw = (max(1, int(round(h * self.border_ratio))), max(1, int(round(w * self.border_ratio))))
        angle, scale, shear, translate = self._draw(h, w)
        matrix = G.affine_matrix((h, w), out_hw, angle=angle, scale=scale, shear=shear, translate=translate)
        interpolation = choice(self._interpolations)
        for key in R.image_keys(results):
            results[key] = G.warp_image(results[key], matrix, out_hw, R.interpolation_for(results, key, interpolation),
                                        R.pad_value_for(results, key, self.border_val))
        for key in results.get("pts_fields", ()):
            results[key] = G.transform_points(R.as_points(results, key), matrix)
        for key in results.get("bbox_fields", ()):
            before = R.as_boxes(results, key)
            moved = G.transform_boxes(before, matrix)
            if self.clip_border:
                moved = G.clip_boxes(moved, *out_hw)
            keep = G.boxes_inside(moved, *out_hw)
            if not self.skip_filter:
                keep &= G.box_filter(before * scale, moved, min_size=self.min_bbox_size,
                                     min_area_ratio=self.min_area_ratio, max_aspect_ratio=self.max_aspect_ratio)
            results[key] = moved
            R.keep_rows(results, key, keep)
        results["img_shape"] = out_hw
        return results
