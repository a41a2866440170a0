"""``TensorboardHook``: what a run is doing, as TensorBoard scalars, images and text.

Event files go to ``output_dir/tensorboard``, from rank 0 only. Tags:

* ``train/<name>``: mean of every step output over the period (``train/loss`` is the total
  loss; each term a model or loss compose reports under its own name)
* ``lr/<engine>``, ``grad_norm/<engine>`` (when DeepSpeed computed one this step)
* ``speed/samples_per_s``, ``speed/tokens_per_s`` (when ``run_step`` returns a ``tokens`` count)
* ``time/step_s``, ``time/data_s``, ``time/compute_s``, ``time/data_share``
* ``system/cpu_rss_gb``; with a GPU ``gpu/util_percent``, ``gpu/mem_used_gb``, ``gpu/temperature_c``,
  ``gpu/power_w``, ``gpu/torch_max_allocated_gb``
* ``fp16/<engine>/loss_scale``, ``fp16/<engine>/skipped_steps`` under fp16
* evaluation metrics under their own names (``val/loss``...), at the step they were computed
* images put with ``put_image`` or returned as ``images`` by ``run_step`` / ``evaluate``
* text ``config`` (the resolved config) and ``deepspeed`` (the DeepSpeed summary) at start
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import torch

from engine import comm
from engine.log.monitor import GpuMonitor
from engine.events.hooks import PeriodicHook
from engine.config.node import to_plain
from engine.runplan.ds_config import summarize

logger = logging.getLogger("engine")


class TensorboardHook(PeriodicHook):
    """Writes the tags listed in the module doc every ``period`` steps (and after the last).

    The scalars are the loop's metrics window (``trainer.metrics``), computed once per log
    boundary for every writer; NVML readings, images and text are this hook's own.
    Evaluation metrics are written at the step they come from.

    Args:
        period: write every N optimizer steps (0: only at the end).
        log_dir: where the event files go; default ``<output_dir>/tensorboard``.
        nvml: an NVML module for the GPU readings (tests pass a double); default ``pynvml``.
    """

    def __init__(self, period: int, log_dir: str = "", nvml: Any = None) -> None:
        super().__init__(period)
        self.log_dir = log_dir
        self.writer: Any = None
        self._nvml = nvml
        self.gpu: Optional[GpuMonitor] = None

    def before_train(self) -> None:
        if not comm.is_main_process():
            return
        from torch.utils.tensorboard import SummaryWriter

        trainer = self.trainer
        log_dir = self.log_dir or os.path.join(trainer.cfg.OUTPUT_DIR, "tensorboard")
        # on resume, events a killed run wrote after the checkpoint are dropped, not doubled
        self.writer = SummaryWriter(log_dir, purge_step=trainer.start_iter or None)
        self.gpu = GpuMonitor(self._nvml)
        self._write_text_at_start()

    def _write_text_at_start(self) -> None:
        import yaml

        trainer = self.trainer
        text = yaml.safe_dump(to_plain(trainer.cfg), sort_keys=False, default_flow_style=False)
        # TensorBoard renders text as Markdown: indent by 4 to keep it verbatim
        self.writer.add_text("config", _verbatim(text), trainer.start_iter)
        ds_config = getattr(trainer, "ds_config", None)
        if ds_config:
            self.writer.add_text("deepspeed", _verbatim(summarize(ds_config)), trainer.start_iter)

    def after_step(self) -> None:
        if self.writer is None:
            return
        trainer = self.trainer
        step = trainer.iter + 1
        storage = trainer.storage
        for name, value in storage.pop_metrics().items():
            self.writer.add_scalar(name, value, step)
        if self.is_due():
            self._write_period(step)
            for name, image in storage.pop_images().items():
                self.writer.add_image(name, image_grid(image), step, dataformats="CHW")

    def _write_period(self, step: int) -> None:
        """The metrics window's scalars (shared with the log line and the trackers), plus NVML readings."""
        summary = self.trainer.metrics.summary(step, self.trainer.model)
        for name, value in summary.scalars.items():
            self.writer.add_scalar(name, value, step)
        for name, value in self.gpu.read().items():
            self.writer.add_scalar(f"gpu/{name}", value, step)

    def after_failure(self) -> None:
        self.after_train()  # what was written so far stays readable

    def after_train(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.gpu is not None:
            self.gpu.close()


def _verbatim(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def image_grid(images: Any, columns: int = 8, pad: int = 2) -> torch.Tensor:
    """A C×H×W float grid in [0, 1] from an N×C×H×W or C×H×W batch (float in [0, 1] or uint8).

    Grayscale stays one channel; more than 64 images are cut to 64, enough to look at.
    """
    images = torch.as_tensor(images).detach().cpu()
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    images = images.float().clamp(0, 1)
    if images.dim() == 3:
        return images
    if images.dim() != 4:
        raise ValueError(f"images must be N×C×H×W or C×H×W, got shape {tuple(images.shape)}")
    images = images[:64]
    n, c, h, w = images.shape
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    grid = torch.zeros(c, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i in range(n):
        top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid
