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
import math
import os
from typing import Any, Optional

import torch

from engine import comm
from engine.log.monitor import GpuMonitor, cpu_rss_gb
from engine.events.hooks import PeriodicHook
from engine.events.window import StepWindow
from engine.config.node import to_plain
from engine.runplan.ds_config import summarize

logger = logging.getLogger("engine")


class TensorboardHook(PeriodicHook):
    """Writes the tags listed in the module doc every ``period`` steps (and after the last).

    Step outputs become floats only at a write, together, so the loop has no per-step
    device sync; evaluation metrics are written at the step they come from.

    Args:
        period: write every N optimizer steps (0: only at the end).
        log_dir: where the event files go; default ``<output_dir>/tensorboard``.
        nvml: an NVML module for the GPU readings (tests pass a double); default ``pynvml``.
    """

    def __init__(self, period: int, log_dir: str = "", nvml: Any = None) -> None:
        super().__init__(period)
        self.log_dir = log_dir
        self.writer: Any = None
        self.window = StepWindow()
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
        self.window.reset()

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
        self.window.add(trainer.step_outputs, trainer.data_time)
        step = trainer.iter + 1
        storage = trainer.storage
        metrics = storage.pop_metrics()
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        if self.is_due():
            self._write_period(step)
            for name, image in storage.pop_images().items():
                self.writer.add_image(name, image_grid(image), step, dataformats="CHW")

    def _write_period(self, step: int) -> None:
        trainer, add = self.trainer, self.writer.add_scalar
        count, data_time = len(self.window), self.window.data_time
        means = self.window.means()
        elapsed = self.window.reset()
        tokens = means.pop("tokens", None)
        for name, value in means.items():
            add(f"train/{name}", value, step)
        for name, lr in trainer.model.learning_rates().items():
            add(f"lr/{name}", lr, step)
        for name, engine in trainer.model.engines.items():
            _engine_scalars(add, name, engine, step)
        add("speed/samples_per_s", count * trainer.global_batch_size / elapsed, step)
        if tokens is not None:  # this rank's count per micro-batch, times micro-batches and data-parallel ranks
            add("speed/tokens_per_s", tokens * trainer.accumulation * trainer.dp_size * count / elapsed, step)
        step_s, data_s = elapsed / count, data_time / count
        add("time/step_s", step_s, step)
        add("time/data_s", data_s, step)
        add("time/compute_s", max(step_s - data_s, 0.0), step)
        add("time/data_share", data_time / elapsed, step)
        rss = cpu_rss_gb()
        if rss is not None:
            add("system/cpu_rss_gb", rss, step)
        for name, value in self.gpu.read().items():
            add(f"gpu/{name}", value, step)
        if torch.cuda.is_available():
            add("gpu/torch_max_allocated_gb", torch.cuda.max_memory_allocated() / 2**30, step)

    def after_train(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.gpu is not None:
            self.gpu.close()


def _engine_scalars(add: Any, name: str, engine: Any, step: int) -> None:
    """Gradient norm and, under fp16, loss scale and skipped steps of one DeepSpeed engine."""
    norm = engine.get_global_grad_norm() if hasattr(engine, "get_global_grad_norm") else None
    if norm is not None:
        norm = float(norm)
        if math.isfinite(norm):
            add(f"grad_norm/{name}", norm, step)
    if hasattr(engine, "fp16_enabled") and engine.fp16_enabled():
        add(f"fp16/{name}/skipped_steps", float(engine.skipped_steps), step)
        scale = getattr(engine.optimizer, "cur_scale", None)
        if scale is not None:
            add(f"fp16/{name}/loss_scale", float(scale), step)


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
