"""Structural similarity as a loss: ``1 - SSIM``.

SSIM compares local means, variances and covariance under a Gaussian window, so it
rewards matching structure and contrast where L1/L2 only match pixel values; image
restoration models trained with it keep edges sharper. The window is applied without
padding ("valid"), the usual definition (Wang et al., 2004).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.errors import ConfigError
from engine.loss.base import LossInputError, WeightedLoss, check_reduction, expect_same_shape, reduce, shape_str
from engine.loss.build import LOSS_ARCH_REGISTRY


def gaussian_window(size: int, sigma: float) -> Tensor:
    """A normalised (size, size) Gaussian kernel, float64 so the sum is exact."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-coords.pow(2) / (2.0 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)


@LOSS_ARCH_REGISTRY.register()
class SSIMLoss(WeightedLoss):
    """``1 - SSIM(pred, target)``, SSIM averaged over channels and pixels of each image.

    pred, target: (N, C, H, W) images with values in ``[0, data_range]``; H and W must
    be at least ``window_size``.

    Args:
        data_range: the value range of the images (1.0 for [0, 1], 255 for bytes); it
            sets the stabilising constants ``(k1·data_range)²`` and ``(k2·data_range)²``.
        window_size: side of the Gaussian window (odd).
        sigma: standard deviation of the Gaussian window.
        k1, k2: the SSIM stabilising constants.
        reduction: over the batch: mean, sum or none.
        lambda_weight: factor of the loss.
    """

    def __init__(self, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5,
                 k1: float = 0.01, k2: float = 0.03, reduction: str = "mean",
                 lambda_weight: float = 1.0) -> None:
        super().__init__(lambda_weight)
        if window_size < 1 or window_size % 2 == 0:
            raise ConfigError(f"window_size must be a positive odd integer, got {window_size!r}")
        if sigma <= 0 or data_range <= 0:
            raise ConfigError(f"sigma and data_range must be > 0, got sigma={sigma!r}, data_range={data_range!r}")
        self.window_size = int(window_size)
        self.c1 = (k1 * data_range) ** 2
        self.c2 = (k2 * data_range) ** 2
        self.reduction = check_reduction(reduction)
        # Not persistent: derived from the parameters, so it has no place in a checkpoint.
        self.register_buffer("window", gaussian_window(self.window_size, sigma).float(), persistent=False)

    def check_inputs(self, pred: Tensor, target: Tensor) -> None:
        expect_same_shape(pred, target, names=self.arguments)
        if pred.dim() != 4:
            raise LossInputError(f"pred shape {shape_str(pred.shape)}: expected images (N, C, H, W)")
        if min(pred.shape[-2:]) < self.window_size:
            raise LossInputError(
                f"image size {shape_str(pred.shape[-2:])} is smaller than window_size={self.window_size}: "
                f"expected H and W >= {self.window_size} (or a smaller window_size)"
            )

    def compute(self, pred: Tensor, target: Tensor) -> Tensor:
        return reduce(1.0 - self.ssim(pred, target), self.reduction)

    def ssim(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-image SSIM, shape (N,): useful as a metric with the loss's own settings."""
        channels = x.shape[1]
        window = self.window.to(x.dtype).expand(channels, 1, -1, -1)

        def blur(t: Tensor) -> Tensor:
            return F.conv2d(t, window, groups=channels)

        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x.pow(2)
        var_y = blur(y * y) - mu_y.pow(2)
        cov = blur(x * y) - mu_x * mu_y
        contrast = (2.0 * cov + self.c2) / (var_x + var_y + self.c2)
        luminance = (2.0 * mu_x * mu_y + self.c1) / (mu_x.pow(2) + mu_y.pow(2) + self.c1)
        return (luminance * contrast).flatten(1).mean(1)
