"""``wandb``: one Weights & Biases run per training, offline unless the user asks otherwise.

The mode is ``WANDB_MODE`` when set, else ``offline``: a run needs no account and no
network, and ``wandb sync output_dir/wandb/offline-run-*`` uploads it later. The run
lives under ``output_dir/wandb``; the project is ``WANDB_PROJECT`` or ``engine``; every
other ``WANDB_*`` variable works as W&B documents it.

What the run holds: the resolved config as the run's config, ``config.yaml`` and
``plan.json`` among the run's files, and the metrics at their steps. W&B's console capture
is off (engine writes its own log file, and the capture would wrap the progress bar).
On resume the run id in ``output_dir/wandb_run_id`` is continued (``resume="allow"``).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from engine.trackers.base import TRACKER_REGISTRY, RunInfo, TrackerWriter
from engine.utils.fileio import atomic_write_text

RUN_ID_FILE = "wandb_run_id"


@TRACKER_REGISTRY.register()
class WandbWriter(TrackerWriter):
    """Metrics and config of a training as one W&B run (see the module doc)."""

    name = "wandb"
    module = "wandb"
    pip = "wandb"

    def __init__(self) -> None:
        self.run: Any = None

    def open(self, run_info: RunInfo) -> None:
        import wandb  # optional and heavy (seconds to import, starts a service process): only when used

        run_id = run_info.resumed_run_id(RUN_ID_FILE)
        os.makedirs(run_info.output_dir, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or "engine",
            name=run_info.name or None,
            dir=os.path.abspath(run_info.output_dir),
            mode=os.environ.get("WANDB_MODE") or "offline",
            config=dict(run_info.config),
            id=run_id,
            resume="allow" if run_id else None,
            settings=wandb.Settings(console="off"),
        )
        run_info.keep_run_id(RUN_ID_FILE, self.run.id)
        if run_id is None:
            self._save_files(run_info)

    def _save_files(self, run_info: RunInfo) -> None:
        """The config and the plan as files of the run (uploaded with it by ``wandb sync``)."""
        files = {
            "config.yaml": run_info.config_yaml(),
            "plan.json": run_info.plan_json(),
        }
        for name, text in files.items():
            path = os.path.join(self.run.dir, name)
            atomic_write_text(path, text)
            self.run.save(path, base_path=self.run.dir, policy="now")

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log({name: float(value) for name, value in metrics.items()}, step=int(step))

    def close(self, failed: bool = False) -> None:
        if self.run is None:
            return
        run, self.run = self.run, None
        run.finish(exit_code=1 if failed else 0)
