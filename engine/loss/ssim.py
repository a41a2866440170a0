"""Structural similarity as a loss: ``1 - SSIM``.

SSIM compares local means, variances and covariance under a Gaussian window, so it
rewards matching structure and contrast where L1/L2 only match pixel values; image
restoration models trained with it keep edges sharper. The window is applied without
padding ("valid"), the usual definition (Wang et al., 2004).

The seed used SSIM on segmentation outputs too: with ``apply_sigmoid`` the prediction goes
through a sigmoid (true) or a softmax over classes (false) and a class-index target is
one-hot encoded. With ``ignore_index``, ignored pixels enter no local statistic (the
window's means and variances are taken over the counted pixels only) and no window
centred on one is averaged.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.errors import ConfigError
from engine.loss.base import LossInputError, WeightedLoss, check_reduction, shape_str
from engine.loss.build import LOSS_ARCH_REGISTRY
from engine.loss.dense import (
    activate,
    choose_activation,
    dense_target,
    expect_probabilities,
    mean_over_counted,
    target_form,
)

logger = logging.getLogger(__name__)


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
    be at least ``window_size``. target may also be class indices (N, H, W) / (N, 1, H, W)
    of a C-class prediction (one-hot encoded), as segmentation uses it.

    Args:
        data_range: the value range of the images (1.0 for [0, 1], 255 for bytes); it
            sets the stabilising constants ``(k1·data_range)²`` and ``(k2·data_range)²``.
        window_size: side of the Gaussian window (odd).
        sigma: standard deviation of the Gaussian window.
        k1, k2: the SSIM stabilising constants.
        reduction: over the batch: mean, sum or none.
        lambda_weight: factor of the loss.
        apply_sigmoid: the seed's switch: true applies a sigmoid to pred, false a softmax
            over channels; None (engine's default) compares pred as it is.
        ignore_index: label of target pixels that count nowhere (e.g. 255), or None.
    """

    def __init__(self, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5,
                 k1: float = 0.01, k2: float = 0.03, reduction: str = "mean",
                 lambda_weight: float = 1.0, apply_sigmoid: Optional[bool] = None,
                 ignore_index: Optional[int] = None) -> None:
        super().__init__(lambda_weight)
        self.activation = choose_activation(None, apply_sigmoid, seed_name="apply_sigmoid", logits_activation="sigmoid",
                                            seed_true="sigmoid", seed_false="softmax")
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self._checked_range = self.activation is not None
        if window_size < 1 or window_size % 2 == 0:
            raise ConfigError(f"window_size must be a positive odd integer, got {window_size!r}")
        if sigma <= 0 or data_range <= 0:
            raise ConfigError(f"sigma and data_range must be > 0, got sigma={sigma!r}, data_range={data_range!r}")
        self.window_size = int(window_size)
        self.data_range = float(data_range)
        self.c1 = (k1 * data_range) ** 2
        self.c2 = (k2 * data_range) ** 2
        self.reduction = check_reduction(reduction)
        # Not persistent: derived from the parameters, so it has no place in a checkpoint.
        self.register_buffer("window", gaussian_window(self.window_size, sigma).float(), persistent=False)

    def check_inputs(self, pred: Tensor, target: Tensor) -> None:
        target_form(pred, target)
        if pred.dim() != 4:
            raise LossInputError(f"pred shape {shape_str(pred.shape)}: expected images (N, C, H, W)")
        if min(pred.shape[-2:]) < self.window_size:
            raise LossInputError(
                f"image size {shape_str(pred.shape[-2:])} is smaller than window_size={self.window_size}: "
                f"expected H and W >= {self.window_size} (or a smaller window_size)"
            )

    def compute(self, pred: Tensor, target: Tensor) -> Tensor:
        if not self._checked_range:
            self._check_first_batch(pred, target)
        pred = activate(pred, self.activation)
        dense, valid = dense_target(pred, target, self.ignore_index)
        if valid is None:
            return mean_over_counted(1.0 - self.ssim(pred, dense), None, self.reduction)
        per_image, counted = self.masked_ssim(pred, dense, valid)
        return mean_over_counted(1.0 - per_image, counted, self.reduction)

    def _check_first_batch(self, pred: Tensor, target: Tensor) -> None:
        """Catch logits given without ``apply_sigmoid`` (the seed's default applied a sigmoid).

        With class-index targets (segmentation) pred must be probabilities: an error. Images
        may overshoot their range slightly, so there it is one warning.
        """
        self._checked_range = True
        if target_form(pred, target) == "indices":
            expect_probabilities(pred, type(self).__name__)
            return
        low, high = float(pred.detach().min()), float(pred.detach().max())
        if low < 0.0 or high > self.data_range:
            logger.warning(
                "SSIMLoss: pred has values outside [0, data_range=%g] (min %.4g, max %.4g); if these are logits, "
                "set apply_sigmoid=True (TrainFramework's SSIMLoss applied a sigmoid unless told otherwise)",
                self.data_range, low, high)

    def _blur(self, t: Tensor) -> Tensor:
        channels = t.shape[1]
        return F.conv2d(t, self.window.to(t.dtype).expand(channels, 1, -1, -1), groups=channels)

    def _ssim_map(self, mu_x: Tensor, mu_y: Tensor, xx: Tensor, yy: Tensor, xy: Tensor) -> Tensor:
        """SSIM at each window from the local means and second moments."""
        var_x, var_y, cov = xx - mu_x.pow(2), yy - mu_y.pow(2), xy - mu_x * mu_y
        contrast = (2.0 * cov + self.c2) / (var_x + var_y + self.c2)
        luminance = (2.0 * mu_x * mu_y + self.c1) / (mu_x.pow(2) + mu_y.pow(2) + self.c1)
        return luminance * contrast

    def ssim(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-image SSIM, shape (N,): useful as a metric with the loss's own settings."""
        blur = self._blur
        return self._ssim_map(blur(x), blur(y), blur(x * x), blur(y * y), blur(x * y)).flatten(1).mean(1)

    def masked_ssim(self, x: Tensor, y: Tensor, valid: Tensor) -> tuple:
        """Per-image SSIM over the counted pixels only, and which images have any.

        Each window's statistics are weighted by the window over the counted pixels
        (normalised convolution), and the map is averaged over windows whose centre pixel
        counts; with every pixel counted this equals ``ssim``.
        """
        m = valid.to(x.dtype)
        blur = self._blur
        weight = blur(m).clamp(min=torch.finfo(x.dtype).tiny)
        stats = [blur(m * t) / weight for t in (x, y, x * x, y * y, x * y)]
        radius = self.window_size // 2
        centre = m[..., radius:m.shape[-2] - radius, radius:m.shape[-1] - radius]
        values = self._ssim_map(*stats) * centre
        count = centre.flatten(1).sum(1)
        return values.flatten(1).sum(1) / count.clamp(min=1), count > 0
