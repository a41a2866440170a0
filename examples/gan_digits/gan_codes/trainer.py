"""Sample grids (EMA and raw weights, one row per digit) as PNG files and TensorBoard images."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict

import numpy as np
import torch

from engine import comm
from engine.events.storage import put_image
from engine.trainer.build import BUILD_TRAINER_REGISTRY
from engine.trainer.trainer import BaseTrainer

logger = logging.getLogger("engine")


@BUILD_TRAINER_REGISTRY.register()
class GanDigitsTrainer(BaseTrainer):
    #: write sample grids every this many optimizer steps (and after the last)
    SAMPLE_PERIOD = 100

    def before_loop(self) -> None:
        g = torch.Generator().manual_seed(1234)  # the same noise every time: grids are comparable over training
        self.fixed_z = torch.randn(100, self.model.z_dim, generator=g)
        self.fixed_labels = torch.arange(10).repeat_interleave(10)

    def iterate_after(self, epoch: int, loss_dict: Dict[str, torch.Tensor]) -> None:
        done = self.iter + 1
        if done % self.SAMPLE_PERIOD == 0 or done == self.max_iter:
            self.write_samples(done)

    @torch.no_grad()
    def write_samples(self, step: int) -> None:
        """Every rank runs the generator (a collective under ZeRO-3); rank 0 writes."""
        model = self.model
        model.g_model.eval()
        try:
            raw = model.generator(self.fixed_z, self.fixed_labels).float().cpu()
            with model.eval_context():  # EMA weights when solver.ema is on; training weights restored after
                ema = model.generator(self.fixed_z, self.fixed_labels).float().cpu()
        finally:
            model.g_model.train()
        for name, images in (("ema", ema), ("raw", raw)):
            # TensorBoard grids hold 64 images in rows of 8: digits 0-7, eight samples each
            put_image(f"samples/{name}", images.view(10, 10, *images.shape[1:])[:8, :8].reshape(64, *images.shape[1:]))
            if comm.is_main_process():
                path = os.path.join(self.cfg.OUTPUT_DIR, f"samples_{name}_{step:06d}.png")
                write_grid(images, path, columns=10)
        if comm.is_main_process():
            logger.info(f"step {step}: wrote samples_ema_{step:06d}.png and samples_raw_{step:06d}.png")


def write_grid(images: torch.Tensor, path: str, columns: int, scale: int = 3) -> None:
    """N×1×H×W in [0, 1] → one PNG, ``columns`` per row, enlarged ``scale`` times (nearest)."""
    import cv2

    n, _, h, w = images.shape
    rows = -(-n // columns)
    grid = np.zeros((rows * (h + 1) + 1, columns * (w + 1) + 1), dtype=np.uint8)
    pixels = (images[:, 0].clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    for i in range(n):
        top, left = 1 + (i // columns) * (h + 1), 1 + (i % columns) * (w + 1)
        grid[top:top + h, left:left + w] = pixels[i]
    grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    if not cv2.imwrite(path, grid):
        raise OSError(f"could not write {path}")
