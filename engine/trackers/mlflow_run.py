"""``mlflow``: one MLflow run per training, in a local file store unless told otherwise.

Where runs go: ``MLFLOW_TRACKING_URI`` when set (a server, ``sqlite:///...``, a folder),
else ``output_dir/mlruns``, so a run needs no server and no network. MLflow 3 keeps its
file store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE`` is true;
for a file store this writer sets that variable (if the user has not) because that store
is the point of the default. ``mlflow-skinny`` is enough: its client carries the file store.

What the run holds: the resolved config flattened into parameters (``solver.max_iter`` ...),
``config.yaml`` and ``plan.json`` as artifacts, the metrics at their steps, and the run's
end state (FINISHED, or FAILED when training raised). The experiment is
``MLFLOW_EXPERIMENT_NAME`` or ``engine``. On resume the run recorded in
``output_dir/mlflow_run_id`` continues, so one training is one run.

The writer talks to ``MlflowClient`` with explicit run ids, not to the fluent
``mlflow.start_run`` API, whose one global active run would collide with a user's own.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Mapping
from urllib.parse import urlparse


from engine.trackers.base import TRACKER_REGISTRY, RunInfo, TrackerWriter, flatten

RUN_ID_FILE = "mlflow_run_id"
_PARAMS_PER_CALL = 100  # MLflow's log_batch limits
_METRICS_PER_CALL = 1000
_PARAM_VALUE_CHARS = 6000
_KEY_CHARS = 250
#: Characters MLflow refuses in parameter and metric names; a user's config key may hold them.
_NOT_A_KEY_CHAR = re.compile(r"[^\w./\- :]")


@TRACKER_REGISTRY.register()
class MlflowWriter(TrackerWriter):
    """Metrics, parameters and artifacts of a training as one MLflow run (see the module doc)."""

    name = "mlflow"
    module = "mlflow"
    pip = "mlflow-skinny"

    def __init__(self) -> None:
        self.client: Any = None
        self.run_id = ""
        self.tracking_uri = ""

    def open(self, run_info: RunInfo) -> None:
        from mlflow.tracking import MlflowClient  # optional and heavy (seconds to import): only when used

        self.tracking_uri = tracking_uri(run_info.output_dir)
        if _is_file_store(self.tracking_uri):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        resumed = run_info.resumed_run_id(RUN_ID_FILE)
        if resumed is not None:
            self.run_id = resumed
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "engine"
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=run_info.name or None).info.run_id
        run_info.keep_run_id(RUN_ID_FILE, self.run_id)
        self._log_run_info(run_info)

    def _log_run_info(self, run_info: RunInfo) -> None:
        from mlflow.entities import Param

        params = [Param(_key(key), _param_value(value)) for key, value in flatten(run_info.config).items()]
        for start in range(0, len(params), _PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=params[start:start + _PARAMS_PER_CALL])
        self.client.log_text(self.run_id, run_info.config_yaml(), "config.yaml")
        self.client.log_text(self.run_id, run_info.plan_json(), "plan.json")

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(_key(name), float(value), stamp, int(step)) for name, value in metrics.items()]
        for start in range(0, len(batch), _METRICS_PER_CALL):
            self.client.log_batch(self.run_id, metrics=batch[start:start + _METRICS_PER_CALL])

    def close(self, failed: bool = False) -> None:
        if self.client is None or not self.run_id:
            return
        client, self.client = self.client, None
        client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


def tracking_uri(output_dir: str) -> str:
    """``MLFLOW_TRACKING_URI``, else the file store ``output_dir/mlruns`` as a ``file:`` URI."""
    return os.environ.get("MLFLOW_TRACKING_URI") or "file://" + os.path.abspath(os.path.join(output_dir, "mlruns"))


def _is_file_store(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")  # a bare path is a file store too


def _key(name: str) -> str:
    """``name`` as MLflow accepts it: refused characters become ``_`` (a run must not fail on a key's spelling)."""
    return _NOT_A_KEY_CHAR.sub("_", str(name))[:_KEY_CHARS]


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_PARAM_VALUE_CHARS]
