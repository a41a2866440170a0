"""engine.trackers: each writer's records read back with the backend's own reader; the group; resume.

MLflow runs against a local file store and W&B in offline mode: real backends, no network.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from engine.trackers import TRACKER_REGISTRY, RunInfo, TrackerGroup, TrackerWriter, build_writers, flatten

CONFIG = {"solver": {"max_iter": 3, "generator": {"optimizer": {"type": "AdamW", "params": {"lr": 0.001}}}},
          "trainer": {"loggers": ["csv"], "hooks": [], "my(key)": 1}, "output_dir": "out"}
PLAN = {"world_size": 1, "engines": {"generator": {"train_batch_size": 8}}}
#: What a log boundary hands over: a new name (val/loss) appears only at the evaluation step.
WRITES = [
    (1, {"train/loss": 2.5, "lr/generator": 0.001, "speed/samples_per_s": 123.25}),
    (2, {"train/loss": 1.0 / 3.0, "lr/generator": 0.0005, "speed/samples_per_s": 130.0}),
    (2, {"val/loss": 0.75}),
    (3, {"train/loss": float("nan"), "lr/generator": 0.00025, "speed/samples_per_s": float("inf")}),
]


def run_info(tmp_path, start_step=0):
    return RunInfo(output_dir=str(tmp_path), config=CONFIG, plan=PLAN, name="unit-run", start_step=start_step)


def write_all(writer, info, writes=WRITES, failed=False):
    writer.open(info)
    for step, metrics in writes:
        writer.write(step, metrics)
    writer.close(failed=failed)


def expected_series(name, writes=WRITES):
    return [(step, metrics[name]) for step, metrics in writes if name in metrics]


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_the_built_in_trackers_are_registered_and_built_by_name():
    assert {"csv", "jsonl", "mlflow", "wandb", "tensorboard"} <= set(TRACKER_REGISTRY.names())
    assert [type(w).name for w in build_writers(["jsonl", "csv"])] == ["jsonl", "csv"]


def test_flatten_gives_dotted_keys_and_keeps_empty_containers():
    assert flatten(CONFIG)["solver.generator.optimizer.params.lr"] == 0.001
    assert flatten(CONFIG)["trainer.loggers.0"] == "csv"
    assert flatten(CONFIG)["trainer.hooks"] == []


def read_csv(tmp_path):
    with open(tmp_path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_csv_is_long_form_with_exact_values_and_one_header(tmp_path):
    write_all(TRACKER_REGISTRY.get("csv")(), run_info(tmp_path))
    rows = read_csv(tmp_path)
    assert (tmp_path / "metrics.csv").read_text().count("step,name,value,time") == 1
    for name in ("train/loss", "lr/generator", "speed/samples_per_s", "val/loss"):
        got = [(int(r["step"]), float(r["value"])) for r in rows if r["name"] == name]
        want = expected_series(name)
        assert [s for s, _ in got] == [s for s, _ in want]
        assert all(same(g, w) for (_, g), (_, w) in zip(got, want)), name  # repr round-trips, nan and inf too


def test_jsonl_has_one_object_per_write_and_null_for_non_finite(tmp_path):
    write_all(TRACKER_REGISTRY.get("jsonl")(), run_info(tmp_path))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [step for step, _ in WRITES]
    assert records[1]["train/loss"] == 1.0 / 3.0 and records[2] == {"step": 2, "time": records[2]["time"], "val/loss": 0.75}
    assert records[3]["train/loss"] is None and records[3]["speed/samples_per_s"] is None


@pytest.mark.parametrize("name", ["csv", "jsonl"])
def test_resume_keeps_records_up_to_the_checkpoint_and_drops_a_torn_line(tmp_path, name):
    writer = TRACKER_REGISTRY.get(name)()
    write_all(writer, run_info(tmp_path))
    with open(writer.path, "a") as f:
        f.write('4,train/lo')  # a run killed in the middle of a line
    write_all(TRACKER_REGISTRY.get(name)(), run_info(tmp_path, start_step=2), writes=[(3, {"train/loss": 9.0})])
    text = open(writer.path).read()
    steps = [int(r["step"]) for r in read_csv(tmp_path)] if name == "csv" else \
        [json.loads(line)["step"] for line in text.splitlines()]
    assert steps == sorted(steps) and steps.count(3) == 1 and 4 not in steps
    assert "9.0" in text and "train/lo\n" not in text


def test_a_fresh_run_replaces_an_old_file(tmp_path):
    write_all(TRACKER_REGISTRY.get("jsonl")(), run_info(tmp_path))
    write_all(TRACKER_REGISTRY.get("jsonl")(), run_info(tmp_path), writes=[(1, {"train/loss": 5.0})])
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_mlflow_run_reads_back_with_mlflow_client(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="pip install -e .[test] installs mlflow-skinny")
    from mlflow.tracking import MlflowClient

    from engine.trackers.mlflow_run import RUN_ID_FILE, tracking_uri

    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(var, raising=False)  # the file store under output_dir; restored after
    writer = TRACKER_REGISTRY.get("mlflow")()
    write_all(writer, run_info(tmp_path), failed=True)
    client = MlflowClient(tracking_uri=tracking_uri(str(tmp_path)))
    assert tracking_uri(str(tmp_path)).endswith(os.path.join(str(tmp_path), "mlruns"))
    run = client.get_run(writer.run_id)
    for name in ("train/loss", "val/loss", "speed/samples_per_s"):
        got = [(m.step, m.value) for m in sorted(client.get_metric_history(writer.run_id, name), key=lambda m: m.step)]
        assert [s for s, _ in got] == [s for s, _ in expected_series(name)], name
        assert all(same(g, w) for (_, g), (_, w) in zip(got, expected_series(name))), name
    assert run.data.params["solver.max_iter"] == "3" and run.data.params["trainer.loggers.0"] == "csv"
    assert run.data.params["trainer.my_key_"] == "1"  # a user's key with characters MLflow refuses
    assert run.info.run_name == "unit-run" and run.info.status == "FAILED"
    assert {a.path for a in client.list_artifacts(writer.run_id)} == {"config.yaml", "plan.json"}
    assert (tmp_path / RUN_ID_FILE).read_text().strip() == writer.run_id

    resumed = TRACKER_REGISTRY.get("mlflow")()  # a resumed training continues the same run
    write_all(resumed, run_info(tmp_path, start_step=3), writes=[(4, {"train/loss": 0.5})])
    assert resumed.run_id == writer.run_id and client.get_run(writer.run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(writer.run_id, "train/loss")][-1] == 4


@pytest.mark.slow  # W&B starts its service process (a few seconds), then its reader runs as a command
def test_wandb_offline_run_reads_back_with_wandb_own_reader(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="pip install -e .[test] installs wandb")
    for var in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    writer = TRACKER_REGISTRY.get("wandb")()
    write_all(writer, run_info(tmp_path))
    run_files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1  # offline: nothing left the machine
    # `wandb leet inspect --json` is W&B's reader of its own transaction log: one record per line
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_files[0])],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    history = [r["history"] for r in records if r["type"] == "history"]
    by_step = {}
    for row in history:
        by_step.setdefault(row["step"]["num"], {}).update(row["item"])
    assert sorted(by_step) == [1, 2, 3]
    for name in ("train/loss", "val/loss", "lr/generator"):
        got = [(step, by_step[step][name]) for step in sorted(by_step) if name in by_step[step]]
        want = [(s, v) for s, v in expected_series(name) if math.isfinite(v)]
        assert [(s, v) for s, v in got if isinstance(v, float) and math.isfinite(v)] == want, name
    config = next(r["run"]["config"]["update"] for r in records if r["type"] == "run")
    assert config["solver"]["max_iter"] == 3 and config["trainer"]["loggers"] == ["csv"]
    assert next(r["run"]["display_name"] for r in records if r["type"] == "run") == "unit-run"
    assert (tmp_path / "wandb_run_id").read_text().strip() == run_files[0].stem.split("-", 1)[1]
    saved = {p.name for p in run_files[0].parent.joinpath("files").iterdir()}
    assert {"config.yaml", "plan.json"} <= saved


def test_tensorboard_scalars_read_back_with_tensorboard_reader(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    write_all(TRACKER_REGISTRY.get("tensorboard")(), run_info(tmp_path))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    got = [(e.step, e.value) for e in events.Scalars("lr/generator")]
    assert got == [(s, pytest.approx(v)) for s, v in expected_series("lr/generator")]
    assert [e.step for e in events.Scalars("val/loss")] == [2]
    assert {"config", "plan"} <= {tag.split("/")[0] for tag in events.Tags()["tensors"]}


class _Recorder(TrackerWriter):
    name = "_recorder"

    def __init__(self, log, fail_on=""):
        self.log, self.fail_on, self.label = log, fail_on, f"w{len(log)}"
        log.append(self.label)

    def open(self, run_info):
        if self.fail_on == "open":
            raise OSError("disk full")
        self.log.append(f"{self.label}.open")

    def write(self, step, metrics):
        if self.fail_on == "write":
            raise ConnectionError("tracking server unreachable")
        self.log.append(f"{self.label}.write{step}")

    def close(self, failed=False):
        self.log.append(f"{self.label}.close{'-failed' if failed else ''}")
        if self.fail_on == "close":
            raise OSError("server gone")


def test_group_closes_every_writer_and_marks_a_raising_block_failed(tmp_path):
    log = []
    writers = [_Recorder(log, fail_on="close"), _Recorder(log)]
    with pytest.raises(KeyError, match="training failed"):  # the training's error, not the close's
        with TrackerGroup(writers).opened(run_info(tmp_path)) as trackers:
            trackers.write(1, {"train/loss": 1.0})
            raise KeyError("training failed")
    assert log[2:] == ["w0.open", "w1.open", "w0.write1", "w1.write1", "w0.close-failed", "w1.close-failed"]
    log.clear()
    group = TrackerGroup(writers).opened(run_info(tmp_path))
    with pytest.raises(OSError, match="server gone"):  # without a training error, the close's error is raised
        group.close()
    assert log == ["w0.open", "w1.open", "w0.close", "w1.close"]


def test_group_whose_writer_fails_to_open_closes_the_ones_already_open(tmp_path):
    log = []
    group = TrackerGroup([_Recorder(log), _Recorder(log, fail_on="open"), _Recorder(log)])
    with pytest.raises(OSError, match="disk full"):
        group.open(run_info(tmp_path))
    assert log[3:] == ["w0.open", "w0.close-failed"]
    group.close()  # nothing left open: a second close does nothing
    assert log[-1] == "w0.close-failed"


def test_a_writer_that_fails_to_write_is_logged_once_and_the_others_go_on(tmp_path, caplog):
    log = []
    group = TrackerGroup([_Recorder(log, fail_on="write"), _Recorder(log)]).opened(run_info(tmp_path))
    for step in (1, 2, 3):
        group.write(step, {"train/loss": 1.0})
    group.close()
    assert log[2:] == ["w0.open", "w1.open", "w1.write1", "w1.write2", "w1.write3", "w0.close", "w1.close"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "failed to write step 1" in errors[0].getMessage()
    assert "unreachable" in caplog.text  # the cause, with its traceback
    assert "tracker '_recorder' lost 3 write(s)" in caplog.text
