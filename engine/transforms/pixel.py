"""Pixel (color) transforms: they change only ``color_fields`` and never move anything.

Limits follow the seed: a number ``x`` is the range ``[1-x, 1+x]`` for factors
(brightness, contrast, saturation, gamma) and ``[-x, x]`` for shifts (hue, and both
limits of ``RandomBrightnessContrast``, which keeps albumentations' offsets); a pair is
the range itself. Images are ``uint8`` (0..255) until ``Normalize``; the point-wise ops
also take ``float32`` images in 0..1.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Sequence, Tuple, Union

import numpy as np

from engine.errors import ConfigError
from engine.transforms import functional as F
from engine.transforms.base import (
    BaseTransform, check_bool, check_number, check_size, choice, config_error, shuffled, to_range, uniform,
)
from engine.transforms.build import BUILD_TRANSFORMER_REGISTRY
from engine.transforms.lut import apply_table, compose
from engine.transforms.results import color_keys
from engine.transforms.shapes import channels

Limit = Union[float, Tuple[float, float]]


class BasicColorTransform(BaseTransform):
    """Base of pixel transforms: one parameter draw per sample, applied to every color field.

    Subclasses implement ``get_params(results)`` (all random draws, from numpy's global
    RNG) and ``apply(img, **params)`` (deterministic). Sharing one draw keeps, e.g., an
    image and its reference (both in ``color_fields``) brightened by the same factor.
    Keys also listed in ``mask_fields`` are never touched.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)

    def transform(self, results: dict) -> dict:
        params = self.get_params(results)
        for key in color_keys(results):
            try:
                results[key] = self.apply(results[key], **params)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{type(self).__name__} on results[{key!r}]: {exc}") from exc
        return results

    def get_params(self, results: dict) -> Dict[str, Any]:
        return {}

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        raise NotImplementedError


class _FactorTransform(BasicColorTransform):
    """A pixel op driven by one number drawn from a range (the ``*_limit`` parameter)."""

    kernel: Callable[..., np.ndarray]

    def __init__(self, name: str, limit: Limit, p: float, **range_rule: Any) -> None:
        super().__init__(p)
        self.range = to_range(self, name, limit, **range_rule)
        setattr(self, name, self.range)

    def get_params(self, results: dict) -> Dict[str, Any]:
        return {"factor": uniform(self.range)}

    def apply(self, img: np.ndarray, factor: float, inplace: bool = False) -> np.ndarray:
        return type(self).kernel(img, factor, inplace=inplace)


class _TableTransform(_FactorTransform):
    """A point-wise factor op whose ``uint8`` form is one 256-entry table.

    ``RandomColorJitter`` composes the tables of consecutive such ops and applies them in
    one pass: exact, since applying ``a`` then ``b`` to uint8 values is ``b[a]``.
    ``reads_pixels`` marks a table computed from its input image (contrast uses its mean),
    which therefore needs the ops before it applied first.
    """

    reads_pixels = False

    def table(self, img: np.ndarray, factor: float) -> np.ndarray:
        """The uint8 table this op applies to ``img`` with the drawn ``factor``."""
        raise NotImplementedError


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomBrightness(_TableTransform):
    """Multiply by a factor from ``brightness_limit`` (0.2 means [0.8, 1.2])."""

    kernel = staticmethod(F.adjust_brightness)

    def __init__(self, brightness_limit: Limit = 0.2, p: float = 0.5) -> None:
        super().__init__("brightness_limit", brightness_limit, p, bounds=(0, np.inf))

    def table(self, img: np.ndarray, factor: float) -> np.ndarray:
        return F.brightness_table(factor)


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomContrast(_TableTransform):
    """Stretch values around the mean gray level by a factor from ``contrast_limit``."""

    kernel = staticmethod(F.adjust_contrast)
    reads_pixels = True

    def __init__(self, contrast_limit: Limit = 0.2, p: float = 0.5) -> None:
        super().__init__("contrast_limit", contrast_limit, p, bounds=(0, np.inf))

    def table(self, img: np.ndarray, factor: float) -> np.ndarray:
        return F.contrast_table(img, factor)


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomSaturation(_FactorTransform):
    """Blend with the gray image by a factor from ``saturation_limit`` (0 gray, 1 unchanged)."""

    kernel = staticmethod(F.adjust_saturation)

    def __init__(self, saturation_limit: Limit = 0.2, p: float = 0.5) -> None:
        super().__init__("saturation_limit", saturation_limit, p, bounds=(0, np.inf))


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomHue(_FactorTransform):
    """Rotate hue by a shift from ``hue_limit`` in turns (0.1 means [-0.1, 0.1] of the circle)."""

    kernel = staticmethod(F.adjust_hue)

    def __init__(self, hue_limit: Limit = 0.2, p: float = 0.5) -> None:
        super().__init__("hue_limit", hue_limit, p, center=0.0, bounds=(-0.5, 0.5))


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomGamma(_TableTransform):
    """``out = max * (in / max) ** gamma`` with gamma from ``gamma_limit`` (must stay > 0)."""

    kernel = staticmethod(F.adjust_gamma)

    def __init__(self, gamma_limit: Limit = (0.8, 1.2), p: float = 0.5) -> None:
        super().__init__("gamma_limit", gamma_limit, p, bounds=(1e-6, np.inf))

    def table(self, img: np.ndarray, factor: float) -> np.ndarray:
        return F.gamma_table(factor)


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomCLAHE(_FactorTransform):
    """Contrast-limited adaptive histogram equalization (uint8 only; RGB on LAB lightness).

    A number ``clip_limit`` means the range [1, clip_limit] (as the seed and
    albumentations): a negative clip limit has no meaning.
    """

    def __init__(self, clip_limit: Limit = 4.0, tile_grid_size: Tuple[int, int] = (8, 8), p: float = 0.5) -> None:
        super().__init__("clip_limit", clip_limit, p, low=1.0, bounds=(0, np.inf))
        self.tile_grid_size = check_size(self, "tile_grid_size", tile_grid_size)

    def apply(self, img: np.ndarray, factor: float, inplace: bool = False) -> np.ndarray:
        return F.clahe(img, factor, self.tile_grid_size, inplace=inplace)


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomGaussianBlur(BasicColorTransform):
    """Gaussian blur with an odd kernel size from ``blur_limit`` and sigma from ``sigma_limit``.

    A number ``blur_limit`` ``k`` means sizes 3..k; a pair may start at 0 (size from sigma)
    when ``sigma_limit`` is above 0. A number ``sigma_limit`` ``s`` means [0, s]; sigma 0
    lets cv2 derive it from the kernel size.
    """

    def __init__(self, blur_limit: Limit = (3, 7), sigma_limit: Limit = 0, p: float = 0.5) -> None:
        super().__init__(p)
        self.blur_limit = to_range(self, "blur_limit", blur_limit, low=3, bounds=(0, np.inf))
        self.sigma_limit = to_range(self, "sigma_limit", sigma_limit, low=0.0, bounds=(0, np.inf))
        self._sizes = [k for k in range(int(self.blur_limit[0]), int(self.blur_limit[1]) + 1) if k == 0 or k % 2]
        ends_ok = all(float(v).is_integer() and (v == 0 or v % 2 == 1) for v in self.blur_limit)
        if not ends_ok or not self._sizes:
            raise config_error(self, "blur_limit", blur_limit, "kernel sizes: odd integers (or 0 with sigma > 0)")
        if self._sizes[0] == 0 and self.sigma_limit[0] == 0:
            raise config_error(self, "blur_limit", blur_limit,
                               "a kernel size above 0 when sigma_limit can draw 0 (one of them sets the blur)")

    def get_params(self, results: dict) -> Dict[str, Any]:
        return {"ksize": choice(self._sizes), "sigma": uniform(self.sigma_limit)}

    def apply(self, img: np.ndarray, ksize: int, sigma: float, inplace: bool = False) -> np.ndarray:
        return F.gaussian_blur(img, ksize, sigma, inplace=inplace)


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomCompress(BasicColorTransform):
    """JPEG or WebP round trip at a quality from ``quality_lower..quality_upper`` in ``quality_step`` steps."""

    def __init__(self, quality_lower: int = 99, quality_upper: int = 100, quality_step: int = 1,
                 compression_type: str = "jpg", p: float = 0.5) -> None:
        super().__init__(p)
        if compression_type not in ("jpg", "webp"):
            raise config_error(self, "compression_type", compression_type, "'jpg' or 'webp'")
        lowest = 1 if compression_type == "webp" else 0
        self.quality_lower = check_number(self, "quality_lower", quality_lower, lowest, 100, integer=True)
        self.quality_upper = check_number(self, "quality_upper", quality_upper, self.quality_lower, 100, integer=True)
        self.quality_step = check_number(self, "quality_step", quality_step, 1, 100, integer=True)
        self.compression_type = compression_type
        self._qualities = list(range(self.quality_lower, self.quality_upper + 1, self.quality_step))

    def get_params(self, results: dict) -> Dict[str, Any]:
        return {"quality": choice(self._qualities)}

    def apply(self, img: np.ndarray, quality: int) -> np.ndarray:
        return F.compress(img, quality, self.compression_type)


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomSharpen(BasicColorTransform):
    """Blend with a sharpened copy: visibility from ``alpha`` (0..1), strength from ``lightness``.

    Each of ``alpha`` and ``lightness`` is a fixed number or a [low, high] range.
    """

    def __init__(self, alpha: Limit = (0.2, 0.5), lightness: Limit = (0.5, 1.0), p: float = 0.5) -> None:
        super().__init__(p)
        self.alpha = to_range(self, "alpha", alpha, center=None, bounds=(0.0, 1.0))
        self.lightness = to_range(self, "lightness", lightness, center=None, bounds=(0.0, np.inf))

    def get_params(self, results: dict) -> Dict[str, Any]:
        return {"alpha": uniform(self.alpha), "lightness": uniform(self.lightness)}

    def apply(self, img: np.ndarray, alpha: float, lightness: float) -> np.ndarray:
        return F.sharpen(img, alpha, lightness)


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomToneCurve(BasicColorTransform):
    """Random S-ish tone curve: two Bezier control points moved by N(0, ``scale``) from 1/4 and 3/4."""

    def __init__(self, scale: float = 0.1, p: float = 0.5) -> None:
        super().__init__(p)
        self.scale = check_number(self, "scale", scale, 0.0, 1.0)

    def get_params(self, results: dict) -> Dict[str, Any]:
        low, high = 0.25, 0.75
        # np.random.normal(loc=(0.25, 0.75), scale=s), value for value, without its ~20 us of broadcasting
        if self.scale:
            gauss = np.random.standard_normal(2).tolist()
            low, high = low + self.scale * gauss[0], high + self.scale * gauss[1]
        return {"low_y": min(max(low, 0.0), 1.0), "high_y": min(max(high, 0.0), 1.0)}

    def apply(self, img: np.ndarray, low_y: float, high_y: float) -> np.ndarray:
        return F.tone_curve(img, low_y, high_y)


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomBrightnessContrast(BasicColorTransform):
    """``v * (1 + c) + b * (255 or the image mean)`` with c from ``contrast_limit``, b from ``brightness_limit``.

    Both limits are offsets, as in the seed (and albumentations): 0.2 means [-0.2, 0.2].
    ``brightness_by_max`` shifts by a fraction of the maximum value (True) or of the
    image's mean (False).
    """

    def __init__(self, brightness_limit: Limit = 0.2, contrast_limit: Limit = 0.2, brightness_by_max: bool = True,
                 p: float = 0.5) -> None:
        super().__init__(p)
        self.brightness_limit = to_range(self, "brightness_limit", brightness_limit, center=0.0)
        self.contrast_limit = to_range(self, "contrast_limit", contrast_limit, center=0.0, bounds=(-1.0, np.inf))
        self.brightness_by_max = check_bool(self, "brightness_by_max", brightness_by_max)

    def get_params(self, results: dict) -> Dict[str, Any]:
        return {"alpha": 1.0 + uniform(self.contrast_limit), "beta": uniform(self.brightness_limit)}

    def apply(self, img: np.ndarray, alpha: float, beta: float) -> np.ndarray:
        return F.adjust_brightness_contrast(img, alpha, beta, self.brightness_by_max)


@BUILD_TRANSFORMER_REGISTRY.register()
class ToGray(BasicColorTransform):
    """Gray (ITU-R 601 luma) replicated to 3 channels, so tensor shapes do not change."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p)

    def apply(self, img: np.ndarray) -> np.ndarray:
        return F.to_gray(img)


@BUILD_TRANSFORMER_REGISTRY.register()
class Normalize(BasicColorTransform):
    """``(img - mean) / std`` per channel, as float32; mean and std are in pixel units (0..255).

    Always applied (no ``p``): a batch mixing normalized and raw images would be a bug.
    """

    def __init__(self, mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375)) -> None:
        super().__init__(1.0)
        self.mean = self._check(mean, "mean", -np.inf)
        self.std = self._check(std, "std", 0.0)
        self._tables: Dict[Tuple[Tuple[float, ...], Tuple[float, ...], int], np.ndarray] = {}

    def _check(self, values: Any, name: str, low: float) -> Tuple[float, ...]:
        seq = values if isinstance(values, (list, tuple)) else [values]
        if not seq or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > low for v in seq):
            raise config_error(self, name, values, "a number or a list of numbers" + (" > 0" if low == 0 else ""))
        return tuple(float(v) for v in seq)

    def apply(self, img: np.ndarray) -> np.ndarray:
        if img.dtype != np.uint8:
            return F.normalize(img, self.mean, self.std)
        # the uint8 table depends only on mean, std and the channel count: built once, not per sample
        key = (self.mean, self.std, channels(img))
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = F.normalize_table(*key)
        return F.apply_normalize_table(img, table)


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomColorJitter(BasicColorTransform):
    """Several color ops in a random order per sample, each with its own probability.

    The ``*_limit`` / ``*_p`` pairs configure ``RandomBrightness``, ``RandomContrast``,
    ``RandomSaturation``, ``RandomHue``, ``RandomGaussianBlur`` (``blur_limit``,
    ``sigma_limit``), ``RandomGamma`` and ``RandomCLAHE`` (``clahe_limit``); see those for
    the meaning of each limit. The defaults are the seed's. ``p`` gates the whole jitter.
    """

    def __init__(self, brightness_limit: Limit = 0.2, brightness_p: float = 0.5,
                 contrast_limit: Limit = 0.2, contrast_p: float = 0.5,
                 saturation_limit: Limit = 0.2, saturation_p: float = 0.5,
                 hue_limit: Limit = 0.1, hue_p: float = 0.1,
                 blur_limit: Limit = (3, 7), sigma_limit: Limit = 0, blur_p: float = 0.2,
                 gamma_limit: Limit = (0.3, 2.0), gamma_p: float = 0.5,
                 clahe_limit: Limit = 4.0, clahe_p: float = 0.2, p: float = 1.0) -> None:
        super().__init__(p)
        self.ops = [
            self._sub(RandomBrightness, dict(brightness_limit=brightness_limit, p=brightness_p), "brightness"),
            self._sub(RandomContrast, dict(contrast_limit=contrast_limit, p=contrast_p), "contrast"),
            self._sub(RandomSaturation, dict(saturation_limit=saturation_limit, p=saturation_p), "saturation"),
            self._sub(RandomHue, dict(hue_limit=hue_limit, p=hue_p), "hue"),
            self._sub(RandomGaussianBlur, dict(blur_limit=blur_limit, sigma_limit=sigma_limit, p=blur_p), "blur"),
            self._sub(RandomGamma, dict(gamma_limit=gamma_limit, p=gamma_p), "gamma"),
            self._sub(RandomCLAHE, dict(clip_limit=clahe_limit, p=clahe_p), "clahe"),
        ]

    def _sub(self, cls: type, params: Dict[str, Any], prefix: str) -> BasicColorTransform:
        """Build one sub-op; its errors are re-raised under this transform's parameter names."""
        try:
            return cls(**params)
        except ConfigError as exc:
            param = getattr(exc, "param", None)
            if param is None:
                raise
            name = f"{prefix}_p" if param == "p" else "clahe_limit" if param == "clip_limit" else param
            raise config_error(self, name, exc.value, exc.expected) from None

    def get_params(self, results: dict) -> Dict[str, Any]:
        chosen = []
        for i in shuffled(len(self.ops)):
            op = self.ops[i]
            if op.draw():
                chosen.append((op, op.get_params(results)))
        return {"ops": chosen}

    def apply(self, img: np.ndarray, ops: Sequence[Tuple[BasicColorTransform, Dict[str, Any]]]) -> np.ndarray:
        # The first op that returns a new array gives the chain an image of its own; the ones
        # after it write into that image (inplace), so k ops allocate one image, not k. On
        # uint8, consecutive table ops (brightness, contrast, gamma) compose into one table
        # applied in one pass. The pixels are the same as applying the ops one by one (tested).
        owned = False
        pending = None  # composed table of the table ops not applied yet

        def step(out: np.ndarray) -> None:
            nonlocal img, owned
            owned = owned or out is not img
            img = out

        for op, params in ops:
            is_table = isinstance(op, _TableTransform) and img.dtype == np.uint8
            if pending is not None and (not is_table or op.reads_pixels):
                step(apply_table(img, pending, inplace=owned))
                pending = None
            if is_table:
                table = op.table(img, **params)
                pending = table if pending is None else compose(pending, table)
            else:
                step(op.apply(img, **params, inplace=owned))
        if pending is not None:
            step(apply_table(img, pending, inplace=owned))
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p}, ops={self.ops!r})"
