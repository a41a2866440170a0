"""Channel-axis bookkeeping the kernels share: how many channels, and the axis cv2 drops."""

from __future__ import annotations

import numpy as np


def channels(img: np.ndarray) -> int:
    """Channel count of an H x W (1) or H x W x C image."""
    return 1 if img.ndim == 2 else img.shape[2]


def keep_axis(img: np.ndarray, out: np.ndarray) -> np.ndarray:
    """cv2 drops a trailing channel axis of size 1: give ``out`` back the one ``img`` had."""
    return out[..., None] if img.ndim == 3 and out.ndim == 2 else out
