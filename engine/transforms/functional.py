"""Pure image kernels: arrays in, arrays out, no randomness, no results dict.

Pixel kernels take ``uint8`` images (values 0..255) and ``float32`` images (values
0..1) of shape H x W or H x W x C, and return the same dtype and shape; they never
modify their input. Point-wise adjustments on ``uint8`` go through a 256-entry lookup
table (:mod:`engine.transforms.lut`), which costs one memory pass whatever the curve.
Color kernels assume RGB channel order (the seed's datasets convert ``cv2.imread``
output to RGB).

The kernels a color chain runs one after another (brightness, contrast, saturation,
hue, gamma, blur, CLAHE) also take ``inplace=True``: the result is written into
``img``, which the caller must own (a fresh contiguous array an earlier kernel
returned), so a chain of k ops allocates one image instead of k.

The geometric kernels (flips, warps, resizes of arrays, points and boxes) live in
:mod:`engine.transforms.geometry` and the codec round trip in :mod:`engine.transforms.codec`;
both are re-exported here.
"""

from __future__ import annotations

from typing import Callable, Sequence, Tuple, Union

import cv2
import numpy as np
import torch

from engine.transforms.codec import compress  # re-exported: see __all__
from engine.transforms.geometry import (  # re-exported: see __all__
    affine_matrix, box_filter, boxes_inside, clip_boxes, flip_boxes, flip_image, flip_points,
    pad_image, resize_image, transform_boxes, transform_points, warp_image,
)
from engine.transforms.lut import UNIT_VALUES, apply_table, curve_table, linear_table, to_table
from engine.transforms.shapes import channels as _channels, keep_axis as _keep_axis

Number = Union[int, float]

__all__ = [
    "to_tensor", "normalize", "normalize_table", "apply_normalize_table", "denormalize", "apply_curve",
    "apply_affine_color", "gray", "adjust_brightness",
    "adjust_contrast", "adjust_brightness_contrast", "adjust_gamma", "tone_curve", "adjust_saturation", "adjust_hue",
    "brightness_table", "contrast_table", "gamma_table",
    "to_gray", "gaussian_blur", "sharpen", "clahe", "compress",
    # geometric kernels, from engine.transforms.geometry
    "affine_matrix", "box_filter", "boxes_inside", "clip_boxes", "flip_boxes", "flip_image", "flip_points",
    "pad_image", "resize_image", "transform_boxes", "transform_points", "warp_image",
]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """H x W or H x W x C array -> contiguous C x H x W tensor.

    ``uint8`` becomes ``float32`` in [0, 1]; floating input becomes ``float32`` unscaled
    (it is already normalized, e.g. by :func:`normalize`); other dtypes (integer label
    masks) keep their dtype.
    """
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
        raise TypeError(f"to_tensor expects an H x W or H x W x C numpy array, got {type(img).__name__}"
                        f"{getattr(img, 'shape', '')}")
    chw = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
    if img.dtype == np.uint8:
        # Transpose while still uint8 (a quarter of the bytes), then convert in one pass.
        return torch.from_numpy(np.ascontiguousarray(chw)).to(torch.float32).div_(255.0)
    if np.issubdtype(img.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))
    return torch.from_numpy(np.ascontiguousarray(chw))


def _check_rgb(img: np.ndarray) -> None:
    _max_value(img)
    if _channels(img) != 3:
        raise ValueError(f"expected a 1- or 3-channel (RGB) image, got {_channels(img)} channels")


def _max_value(img: np.ndarray) -> float:
    if img.dtype == np.uint8:
        return 255.0
    if img.dtype == np.float32:
        return 1.0
    raise TypeError(f"pixel transforms take uint8 (0..255) or float32 (0..1) images, got {img.dtype}")


def apply_curve(img: np.ndarray, curve: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a point-wise ``curve`` (in the image's own value units) and clip to the valid range."""
    top = _max_value(img)
    if img.dtype == np.uint8:
        return apply_table(img, curve_table(curve))
    out = np.asarray(curve(img), dtype=np.float32)
    if np.may_share_memory(out, img):  # an identity-like curve: never clip the caller's array in place
        out = out.copy()
    return _clip_inplace(out, top)


def _clip_inplace(out: np.ndarray, top: float) -> np.ndarray:
    """Clip a fresh float32 result to [0, top] without allocating a second image-sized array."""
    return np.clip(out, 0.0, top, out=out)


_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, the weights of cv2.COLOR_RGB2GRAY
# saturation's 3 x 4 color matrix is factor * _EYE34 + (1 - factor) * _GRAY34 (last column: no offset);
# built from these once, it costs two small array ops per sample instead of a dozen
_EYE34 = np.eye(3, 4)
_GRAY34 = np.concatenate([np.tile(_LUMA, (3, 1)), np.zeros((3, 1))], axis=1)
_GRAY33 = np.ascontiguousarray(_GRAY34[:, :3])  # to_gray's float32 matrix: luma in every channel


def apply_affine_color(img: np.ndarray, matrix: np.ndarray, offset: Union[float, np.ndarray] = 0.0,
                       inplace: bool = False) -> np.ndarray:
    """``out[c] = sum_k matrix[c, k] * img[k] + offset[c]`` per pixel, clipped to the valid range.

    One ``cv2.transform`` pass (vectorized, rounding and saturating uint8 itself) is about
    4x faster than a lookup table, and also covers ops that mix channels (saturation, gray).
    """
    top = _max_value(img)
    channels = _channels(img)
    m = np.concatenate([np.asarray(matrix, np.float64).reshape(channels, channels),
                        np.broadcast_to(np.asarray(offset, np.float64), (channels,))[:, None]], axis=1)
    if channels > 4:  # cv2.transform stops at 4 channels
        out = img.reshape(-1, channels).astype(np.float32) @ m[:, :-1].T.astype(np.float32) + m[:, -1]
        out = np.clip(out, 0, top).reshape(img.shape)
        return np.rint(out).astype(np.uint8) if img.dtype == np.uint8 else out.astype(np.float32)
    return _color_pass(img, m, top, inplace)


def _color_pass(img: np.ndarray, m: np.ndarray, top: float, inplace: bool) -> np.ndarray:
    """One ``cv2.transform`` with the ``C x (C + 1)`` float64 matrix ``m``; float results clipped to [0, top]."""
    src = img.reshape(*img.shape[:2], m.shape[0])
    out = cv2.transform(src, m, dst=src if inplace else None).reshape(img.shape)
    return out if img.dtype == np.uint8 else _clip_inplace(out, top)


def _scaled(img: np.ndarray, factor: float, offset: float = 0.0, inplace: bool = False) -> np.ndarray:
    """``img * factor + offset`` on every channel: a lookup table on uint8 (one byte pass), else one cv2 pass."""
    if img.dtype == np.uint8:
        return apply_table(img, linear_table(factor, offset), inplace)
    channels = _channels(img)
    if channels > 4:
        return apply_affine_color(img, factor * np.eye(channels), offset, inplace)
    m = np.eye(channels, channels + 1) * factor  # the same matrix apply_affine_color builds, in two small ops
    m[:, -1] = offset
    return _color_pass(img, m, _max_value(img), inplace)


def _channel_means(img: np.ndarray) -> np.ndarray:
    channels = _channels(img)
    if channels > 4:
        return img.reshape(-1, channels).mean(axis=0)
    return np.asarray(cv2.mean(img)[:channels])


def gray(img: np.ndarray) -> np.ndarray:
    """Single-channel luma (ITU-R 601 weights, as cv2) of an RGB or gray image."""
    if _channels(img) == 1:
        return img.reshape(img.shape[:2])
    if _channels(img) != 3:
        raise ValueError(f"expected a 1- or 3-channel image, got {_channels(img)} channels")
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def brightness_table(factor: float) -> np.ndarray:
    """The ``uint8`` table of :func:`adjust_brightness`."""
    return linear_table(factor)


def adjust_brightness(img: np.ndarray, factor: float, inplace: bool = False) -> np.ndarray:
    """Multiply every value by ``factor`` (0 gives black, 1 the image itself)."""
    if img.dtype == np.uint8:
        return apply_table(img, brightness_table(factor), inplace)
    return _scaled(img, factor, 0.0, inplace)


def _contrast_offset(img: np.ndarray, factor: float) -> float:
    """``(1 - factor) * mean gray level``: the offset that keeps the mean where it is."""
    means = _channel_means(img)
    if means.size not in (1, 3):
        raise ValueError(f"expected a 1- or 3-channel image, got {means.size} channels")
    mean = float(means @ _LUMA) if means.size == 3 else float(means[0])
    return (1.0 - factor) * mean


def contrast_table(img: np.ndarray, factor: float) -> np.ndarray:
    """The ``uint8`` table of :func:`adjust_contrast` on ``img`` (it depends on the image's mean)."""
    return linear_table(factor, _contrast_offset(img, factor))


def adjust_contrast(img: np.ndarray, factor: float, inplace: bool = False) -> np.ndarray:
    """Scale the distance of every value from the image's mean gray level by ``factor``."""
    if img.dtype == np.uint8:
        return apply_table(img, contrast_table(img, factor), inplace)
    return _scaled(img, factor, _contrast_offset(img, factor), inplace)


def adjust_brightness_contrast(img: np.ndarray, alpha: float, beta: float, beta_by_max: bool = True) -> np.ndarray:
    """``v * alpha + beta * (max value or image mean)``: albumentations' (and the seed's) formula."""
    _max_value(img)
    offset = beta * (_max_value(img) if beta_by_max else float(_channel_means(img).mean()))
    return _scaled(img, alpha, offset)


_UNIT_ROW = UNIT_VALUES.reshape(1, 256)  # cv2 takes 2-D arrays


def gamma_table(gamma: float) -> np.ndarray:
    """The ``uint8`` table of :func:`adjust_gamma`."""
    if gamma <= 0:  # 0 ** gamma is 1 or inf: numpy's pow, then round and clip
        values = np.power(UNIT_VALUES, gamma)
        values *= 255.0
        return to_table(values)
    # cv2.pow is a vectorized pow, about twice as fast as np.power on these 256 doubles and
    # within an ulp of it: the same tables (checked against np.power in test_transforms_kernels)
    values = cv2.pow(_UNIT_ROW, float(gamma)).reshape(256)
    values *= 255.0
    # (v / 255) ** gamma stays in [0, 1] for gamma >= 0, so rounding is enough: no clip
    return np.rint(values, out=values).astype(np.uint8)


def adjust_gamma(img: np.ndarray, gamma: float, inplace: bool = False) -> np.ndarray:
    """``max * (v / max) ** gamma``: gamma < 1 brightens dark tones, > 1 darkens them."""
    top = _max_value(img)
    if img.dtype == np.uint8:
        return apply_table(img, gamma_table(gamma), inplace)
    # cv2.pow is one vectorized pass, about 3x faster than np.power on float32.
    return _clip_inplace(_keep_axis(img, cv2.pow(img, float(gamma), dst=img if inplace else None)), top)


def tone_curve(img: np.ndarray, low_y: float, high_y: float) -> np.ndarray:
    """Map values through the cubic Bezier through (0, 0), (1/3, low_y), (2/3, high_y), (1, 1)."""
    top = _max_value(img)
    # The Bezier as a cubic in t = v / top, evaluated by Horner's rule: on float32 images
    # that is five in-place passes over one array instead of a dozen image-sized temporaries.
    c1, c2, c3 = 3 * low_y, 3 * high_y - 6 * low_y, 1 + 3 * low_y - 3 * high_y

    def bezier(v: np.ndarray) -> np.ndarray:
        t = v if top == 1.0 else v / top  # float32 images are already in [0, 1]: no copy
        out = t * np.asarray(c3, t.dtype)
        for c in (c2, c1):
            out += c
            out *= t
        return out if top == 1.0 else out * top
    return apply_curve(img, bezier)


def adjust_saturation(img: np.ndarray, factor: float, inplace: bool = False) -> np.ndarray:
    """Blend with the gray image: 0 is gray, 1 the image, >1 more saturated. Gray input is returned as is."""
    if _channels(img) == 1:
        return img
    _check_rgb(img)
    m = _GRAY34 * (1.0 - factor)
    m += _EYE34 * factor
    return _color_pass(img, m, _max_value(img), inplace)


def _add_to_hue(hsv: np.ndarray, amount: Number) -> None:
    """Add ``amount`` to the hue (first) channel of an H x W x 3 image, in place.

    Adding a ``(amount, 0, 0)`` pattern to every contiguous row is one SIMD pass; the same
    add on the strided hue plane ``hsv[..., 0]`` is about 3x slower (8x with float32's
    temporaries).
    """
    row = np.zeros(hsv.shape[1] * 3, hsv.dtype)
    row[0::3] = amount
    rows = hsv.reshape(hsv.shape[0], -1)
    np.add(rows, row, out=rows)


def adjust_hue(img: np.ndarray, shift: float, inplace: bool = False) -> np.ndarray:
    """Rotate hue by ``shift`` turns (-0.5..0.5 covers the circle). Gray input is returned as is."""
    if _channels(img) == 1 or shift == 0:
        return img
    _check_rgb(img)
    if img.dtype == np.uint8:
        # The _FULL variant spreads hue over 0..255, so uint8 wrap-around is the turn itself.
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)
        _add_to_hue(hsv, int(round(shift * 256)) % 256)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL, dst=img if inplace else None)
    # float32 hue is in degrees [0, 360). cv2's HSV2RGB wraps hues in [360, 720) itself (not
    # negative ones), so the shift is added as a turn in [0, 1): no modulo pass over the image
    # (checked against the modulo form in test_transforms_kernels)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    _add_to_hue(hsv, np.float32((shift % 1.0) * 360.0))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB, dst=img if inplace else None)


def to_gray(img: np.ndarray) -> np.ndarray:
    """Gray replicated over 3 channels, so the shape (and the network input) stays the same."""
    if _channels(img) == 1:
        return img
    _check_rgb(img)
    if img.dtype == np.uint8:
        # Weigh with cvtColor's fixed-point kernel, then interleave three copies with cv2.merge.
        # cvtColor's GRAY2RGB copies a hot plane faster, but with a loader's outputs held the
        # three-channel write dominates and the two measure the same; one 3 x 3 cv2.transform,
        # in floating point, is slower than both (and rounds differently).
        gray_plane = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        return cv2.merge((gray_plane, gray_plane, gray_plane))
    # float32: one cv2.transform pass (every output channel the luma row) reads and writes the
    # image once, about 1.3x faster than weigh + replicate, which writes a gray plane between
    return cv2.transform(img, _GRAY33)


def gaussian_blur(img: np.ndarray, ksize: int, sigma: float = 0.0, inplace: bool = False) -> np.ndarray:
    """Gaussian blur; ``ksize`` 0 derives the kernel from ``sigma``, ``sigma`` 0 from ``ksize``."""
    return _keep_axis(img, cv2.GaussianBlur(img, (int(ksize), int(ksize)), sigmaX=float(sigma),
                                            dst=img if inplace else None))


_SHARPEN_TAPS = np.array([[-1, -1, -1], [-1, 0, -1], [-1, -1, -1]], dtype=np.float32)


def sharpen(img: np.ndarray, alpha: float, lightness: float) -> np.ndarray:
    """Blend the image with a Laplacian-sharpened copy (``alpha`` 0: none, 1: fully sharpened)."""
    # (1 - alpha) * identity + alpha * laplacian, in float32, written out: the off-center taps
    # are -alpha, the center (1 - alpha) + alpha * (8 + lightness)
    kernel = _SHARPEN_TAPS * np.float32(alpha)
    kernel[1, 1] = np.float32(1 - alpha) + np.float32(alpha) * np.float32(8 + lightness)
    out = _keep_axis(img, cv2.filter2D(img, -1, kernel))
    return out if img.dtype == np.uint8 else _clip_inplace(out, 1.0)


def clahe(img: np.ndarray, clip_limit: float, tile_grid_size: Tuple[int, int] = (8, 8),
          inplace: bool = False) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization; RGB images are equalized on LAB lightness."""
    if img.dtype != np.uint8:
        raise TypeError(f"clahe takes uint8 images, got {img.dtype}")
    op = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=tuple(int(t) for t in tile_grid_size))
    if _channels(img) == 1:
        return _keep_axis(img, op.apply(img.reshape(img.shape[:2])))
    if _channels(img) != 3:
        raise ValueError(f"clahe takes 1- or 3-channel images, got {_channels(img)} channels")
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
    lab[..., 0] = op.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB, dst=img if inplace else None)


def _per_channel(values: Union[Number, Sequence[Number]], channels: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, channels)
    if arr.size != channels:
        raise ValueError(f"{what} has {arr.size} values for a {channels}-channel image")
    return arr


def _mean_and_scale(mean: Sequence[Number], std: Sequence[Number], channels: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per-channel float64 ``mean`` and ``1 / std`` (one value is every channel's)."""
    return _per_channel(mean, channels, "mean"), 1.0 / _per_channel(std, channels, "std")


def normalize_table(mean: Sequence[Number], std: Sequence[Number], channels: int) -> np.ndarray:
    """The ``(256, 1, channels)`` float32 table of :func:`normalize` on ``uint8`` images.

    It depends only on ``mean`` and ``std``, so a transform builds it once and reuses it
    through :func:`apply_normalize_table`: building it (about 20 us, a dozen small numpy
    calls) costs a tenth of applying it to a 256 x 256 image.

    Args:
        mean: per-channel (or one) mean, in 0..255 units.
        std: per-channel (or one) standard deviation, in 0..255 units.
        channels: channel count of the images the table is for.

    Returns:
        The table ``(v - mean[c]) / std[c]`` for ``v`` in 0..255.
    """
    mean, scale = _mean_and_scale(mean, std, channels)
    lut = ((np.arange(256, dtype=np.float64)[:, None] - mean) * scale).astype(np.float32)
    return lut.reshape(256, 1, channels)


def apply_normalize_table(img: np.ndarray, table: np.ndarray) -> np.ndarray:
    """A ``uint8`` image through a :func:`normalize_table`: cv2.LUT reads bytes and writes float32 in one pass."""
    return _keep_axis(img, cv2.LUT(img, table))


def normalize(img: np.ndarray, mean: Sequence[Number], std: Sequence[Number]) -> np.ndarray:
    """``(img - mean) / std`` per channel, as float32 (mean and std in the image's own units)."""
    channels = _channels(img)
    if img.dtype == np.uint8:
        return apply_normalize_table(img, normalize_table(mean, std, channels))
    mean, scale = _mean_and_scale(mean, std, channels)
    # the subtraction casts to float32 as it goes: one new array, where astype + subtract made two
    out = np.subtract(img.reshape(*img.shape[:2], channels), mean.astype(np.float32), dtype=np.float32)
    out *= scale.astype(np.float32)
    return out.reshape(img.shape)


def denormalize(img: np.ndarray, mean: Sequence[Number], std: Sequence[Number]) -> np.ndarray:
    """Undo :func:`normalize` (for looking at augmented samples); returns float32."""
    channels = _channels(img)
    mean = _per_channel(mean, channels, "mean").astype(np.float32)
    std = _per_channel(std, channels, "std").astype(np.float32)
    return (img.astype(np.float32).reshape(*img.shape[:2], channels) * std + mean).reshape(img.shape)
