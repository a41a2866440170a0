"""``tensorboard``: the window's scalars as TensorBoard events in ``output_dir/tensorboard``.

The scalars only: images and the DeepSpeed text summary stay with ``TensorboardHook``,
which reads the trainer directly. The resolved config and the run plan are written once
as text at the start step. On resume, events a killed run wrote after the checkpoint are
purged (``purge_step``), so each step appears once.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from engine.trackers.base import TRACKER_REGISTRY, RunInfo, TrackerWriter


@TRACKER_REGISTRY.register()
class TensorboardWriter(TrackerWriter):
    """Scalars of each write as TensorBoard events (see the module doc)."""

    name = "tensorboard"
    module = "tensorboard"
    pip = "tensorboard"

    def __init__(self) -> None:
        self.writer: Any = None

    def open(self, run_info: RunInfo) -> None:
        # torch's writer, imported only when used: the config check imports this module without torch
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(os.path.join(run_info.output_dir, "tensorboard"),
                                    purge_step=run_info.start_step or None)
        for tag, text in (("config", run_info.config_yaml()), ("plan", run_info.plan_json())):
            # TensorBoard renders text as Markdown: indent by 4 to keep it verbatim
            self.writer.add_text(tag, "\n".join("    " + line for line in text.splitlines()), run_info.start_step)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, float(value), int(step))
        self.writer.flush()  # writes come at log boundaries only: cheap, and a killed run keeps them

    def close(self, failed: bool = False) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()
