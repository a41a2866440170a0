"""``MetricsWindow``: the one window over step outputs that every writer reads.

The loop adds each step's outputs and data wait; at a log boundary the first writer to ask
gets a ``WindowSummary`` computed once (one host transfer for all the means, one LR read,
one grad-norm read per engine), and every later writer of that step gets the same object.
The log line, the progress bar, TensorBoard and the ``trainer.loggers`` trackers all read
it, so samples/s is computed once and they never disagree.

Names of ``WindowSummary.scalars`` (what trackers receive): ``train/<output>``,
``lr/<engine>``, ``grad_norm/<engine>``, ``fp16/<engine>/loss_scale`` and ``skipped_steps``,
``speed/samples_per_s``, ``speed/tokens_per_s`` (when a step returns a ``tokens`` count),
``time/step_s``, ``time/data_s``, ``time/compute_s``, ``time/data_share``,
``system/cpu_rss_gb``, with CUDA ``gpu/torch_max_allocated_gb``, and, when a peak FLOP/s is known
(``trainer.peak_tflops`` or the GPU table of ``engine.log.flops``) and the bundle counted its
training FLOPs, ``perf/tflops_per_device`` and ``perf/mfu`` (a fraction of the peak).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

import torch

from engine.events.window import StepWindow
from engine.log.flops import mfu
from engine.log.monitor import cpu_rss_gb


@dataclass
class WindowSummary:
    """One log boundary's figures.

    Args:
        step: the optimizer step it ends (counted from 1).
        steps: optimizer steps in the window.
        elapsed: seconds the window lasted.
        data_time: seconds of it spent waiting for data.
        means: the mean of every step output (``tokens`` included) by its own name.
        lrs: the learning rate of each engine.
        scalars: every figure by its tracker name (see the module doc).
    """

    step: int
    steps: int
    elapsed: float
    data_time: float
    means: Dict[str, float]
    lrs: Dict[str, float]
    scalars: Dict[str, float] = field(default_factory=dict)

    @property
    def samples_per_s(self) -> float:
        return self.scalars["speed/samples_per_s"]

    @property
    def data_share(self) -> float:
        return self.data_time / self.elapsed


class MetricsWindow:
    """Step outputs since the last boundary, and the summary of the latest boundary.

    Args:
        samples_per_step: samples of one optimizer step over all ranks.
        token_scale: what a step's ``tokens`` output (one rank's count per micro-batch) is
            multiplied by for the step's total: micro-batches times data-parallel ranks.
    """

    def __init__(self, samples_per_step: int, token_scale: int = 1, *, peak_flops: Optional[float] = None,
                 devices: int = 1) -> None:
        self.samples_per_step = samples_per_step
        self.token_scale = token_scale
        self.peak_flops = peak_flops  # of one device; None: MFU is not reported
        self.devices = devices  # data-parallel replicas sharing the samples/s
        self.window = StepWindow()
        self.latest: Optional[WindowSummary] = None

    def reset(self) -> None:
        """Start timing a fresh window (at train start)."""
        self.window.reset()
        self.latest = None

    def add(self, outputs: Mapping[str, Any], data_time: float) -> None:
        """One step's mean outputs and the seconds it waited for data."""
        self.window.add(outputs, data_time)

    def summary(self, step: int, model: Any) -> WindowSummary:
        """The window ending at ``step``, computed at the first call for that step and kept.

        Args:
            step: the optimizer step (from 1) that ends the window.
            model: the bundle; its ``learning_rates()`` and ``engines`` (when it has them) are read.

        Returns:
            The summary; the window restarts for the steps after ``step``.
        """
        if self.latest is not None and self.latest.step == step:
            return self.latest
        count, data_time = max(len(self.window), 1), self.window.data_time
        means = self.window.means()
        elapsed = self.window.reset()
        lrs = dict(model.learning_rates()) if hasattr(model, "learning_rates") else {}
        summary = WindowSummary(step, count, elapsed, data_time, means, lrs)
        self._fill_scalars(summary, getattr(model, "engines", {}))
        self._fill_mfu(summary.scalars, getattr(model, "training_flops_per_sample", None))
        self.latest = summary
        return summary

    def _fill_scalars(self, summary: WindowSummary, engines: Mapping[str, Any]) -> None:
        out, count, elapsed = summary.scalars, summary.steps, summary.elapsed
        out.update((f"train/{name}", value) for name, value in summary.means.items() if name != "tokens")
        out.update((f"lr/{name}", lr) for name, lr in summary.lrs.items())
        for name, engine in engines.items():
            out.update(engine_scalars(name, engine))
        out["speed/samples_per_s"] = count * self.samples_per_step / elapsed
        tokens = summary.means.get("tokens")
        if tokens is not None:
            out["speed/tokens_per_s"] = tokens * self.token_scale * count / elapsed
        step_s, data_s = elapsed / count, summary.data_time / count
        out["time/step_s"], out["time/data_s"] = step_s, data_s
        out["time/compute_s"] = max(step_s - data_s, 0.0)
        out["time/data_share"] = summary.data_time / elapsed
        rss = cpu_rss_gb()
        if rss is not None:
            out["system/cpu_rss_gb"] = rss
        if torch.cuda.is_available():
            out["gpu/torch_max_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30


    def _fill_mfu(self, out: Dict[str, float], flops_per_sample: Optional[float]) -> None:
        """``perf/tflops_per_device`` and ``perf/mfu``, once the bundle has counted its FLOPs and a peak is known."""
        if not flops_per_sample or self.peak_flops is None:
            return
        utilisation = mfu(out["speed/samples_per_s"], flops_per_sample, self.peak_flops, self.devices)
        out["perf/mfu"] = utilisation
        out["perf/tflops_per_device"] = utilisation * self.peak_flops / 1e12


def global_grad_norm(engine: Any) -> Optional[float]:
    """The engine's global gradient norm of the last step when DeepSpeed computed one (ZeRO 1-3, bf16), else None.

    Non-finite norms are returned as they are: the metrics leave them out, the bad-batch record keeps them.
    """
    norm = engine.get_global_grad_norm() if hasattr(engine, "get_global_grad_norm") else None
    return None if norm is None else float(norm)


def engine_scalars(name: str, engine: Any) -> Dict[str, float]:
    """Gradient norm (when finite) and, under fp16, loss scale and skipped steps of one DeepSpeed engine."""
    out: Dict[str, float] = {}
    norm = global_grad_norm(engine)
    if norm is not None and math.isfinite(norm):
        out[f"grad_norm/{name}"] = norm
    if hasattr(engine, "fp16_enabled") and engine.fp16_enabled():
        out[f"fp16/{name}/skipped_steps"] = float(engine.skipped_steps)
        scale = getattr(engine.optimizer, "cur_scale", None)
        if scale is not None:
            out[f"fp16/{name}/loss_scale"] = float(scale)
    return out
