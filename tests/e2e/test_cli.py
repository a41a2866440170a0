"""The command line as a user runs it: the digits example, bad input, plain-python multi-process."""

import csv
import glob
import json
import os
import re
import sys

import pytest
import yaml

from tests.helpers import DIGITS, TOY, free_port, launcher_cmd, read_records, run_cli, run_scenarios


PEAK_TFLOPS = 0.05
DIGITS_RUNS = {"digits.py": "digits.py", "digits.yaml": "digits.yaml", "grouped": "base.py"}


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    """The digits example's trainings of this file, one after another in one process start.

    Returns:
        Run name → its output dir.
    """
    root = tmp_path_factory.mktemp("digits")
    short = ["solver.max_iter", "60", "solver.eval_period", "30", "trainer.log_period", "20",
             "solver.generator.lr_scheduler.params.max_iter", "60", "trainer.loggers", "['tensorboard', 'csv', 'jsonl']"]
    grouped = ["dataloader.group_sampler", "True", "solver.max_iter", "10", "solver.eval_period", "0",
               "solver.generator.lr_scheduler.params.max_iter", "100"]
    mfu = ["trainer.peak_tflops", str(PEAK_TFLOPS)]  # digits.py: MFU against a given peak; digits.yaml: none known
    runs = [(name, ["--config-file", DIGITS / "configs" / config, "--opts", "output_dir", root / name,
                    *(grouped if name == "grouped" else short + (mfu if name == "digits.py" else []))])
            for name, config in DIGITS_RUNS.items()]
    outcomes = run_scenarios(runs, root / "start", nproc=1, imports=[DIGITS / "train.py"], timeout=400)
    for name, outcome in outcomes.items():
        assert outcome.codes == [0], (name, outcome.stdout[-4000:])
    return {name: root / name for name in DIGITS_RUNS}


@pytest.mark.slow
@pytest.mark.timeout(600)  # the first test to ask for the fixture pays for its three trainings
@pytest.mark.parametrize("config", ["digits.py", "digits.yaml"])
def test_digits_short_run_writes_its_outputs(digits_runs, config):
    out = digits_runs[config]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["solver"]["max_iter"] == 60 and saved["output_dir"] == str(out)
    assert saved["dataloader"]["train_data_set"]["transformer"][0]["name"] == "RandomAffine"
    ds = json.loads((out / "ds_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == 1 and ds["train_batch_size"] == 32 and ds["gradient_clipping"] == 5.0
    log = (out / "digits.log").read_text()
    assert "step 60/60" in log and "eval at step 30" in log and "final validation accuracy" in log
    accuracy = float(log.split("final validation accuracy ")[1].split(":")[0])
    assert accuracy > 0.5  # 60 steps: well above chance (0.1); the full run reaches ≥ 0.95
    # the trackers got the figures the log lines show (one metrics window feeds both)
    logged = {int(m[1]): m[2] for m in re.finditer(r"step (\d+)/60  .*?  loss (\S+)", log)}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    jsonl_loss = {r["step"]: f"{r['train/loss']:.4f}" for r in records if "train/loss" in r}
    assert sorted(logged) == [20, 40, 60] and jsonl_loss == logged
    assert [r["step"] for r in records if "val/accuracy" in r] == [30, 60]
    with open(out / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["name"] == "train/loss"]
    assert {int(r["step"]): f"{float(r['value']):.4f}" for r in rows} == logged
    speed = [r for r in records if "speed/samples_per_s" in r]
    if config == "digits.py":  # MFU: FLOPs per sample counted once, the same at every log step
        assert re.search(r"step 20/60  .*  mfu \d+\.\d%  data", log)
        assert all(r["perf/mfu"] * PEAK_TFLOPS == pytest.approx(r["perf/tflops_per_device"]) for r in speed)
        per_sample = [r["perf/tflops_per_device"] * 1e12 / r["speed/samples_per_s"] for r in speed]
        assert per_sample[0] > 1e5 and per_sample == pytest.approx([per_sample[0]] * len(speed), rel=1e-9)
    else:  # a CPU has no known peak: nothing counted, nothing reported
        assert not any("perf/mfu" in r for r in records) and " mfu " not in log


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_aspect_ratio_grouping_trains_from_config(digits_runs):
    assert "step 10/10" in (digits_runs["grouped"] / "digits.log").read_text()


# One override the config check rejects, through the real command line: exit 2, one message, no
# traceback. The rest of the checks run in-process in test_bad_config_corpus.py.
def test_bad_input_ends_with_one_clear_message(tmp_path):
    out = tmp_path / "out"
    result = run_cli([sys.executable, str(DIGITS / "train.py"), "--config-file", str(DIGITS / "configs" / "digits.py"),
                      "--opts", "output_dir", str(out), "trainer.model.name", "DigitModel"], timeout=120)
    assert result.returncode == 2, result.stdout[-3000:]
    assert "No object named 'DigitModel' in registry MODEL. Did you mean 'DigitsModel'" in result.stdout
    assert "Traceback" not in result.stdout
    assert not out.exists()  # rejected before any output was created


def test_missing_config_file_fails_before_creating_anything(tmp_path):
    result = run_cli([sys.executable, str(DIGITS / "train.py"), "--config-file", str(tmp_path / "none.py")], timeout=60)
    assert result.returncode == 2 and "config file not found" in result.stdout
    assert "Traceback" not in result.stdout


@pytest.mark.slow
def test_plain_python_spawns_num_gpus_processes(tmp_path):
    out = tmp_path / "out"
    result = run_cli([sys.executable, str(TOY / "train.py"), "--num-gpus", "2", "--config-file", str(TOY / "cfg.py"),
                      "--opts", "output_dir", str(out), "solver.max_iter", "10"])
    assert result.returncode == 0, result.stdout[-4000:]
    records = read_records(out, 2)
    assert [r["world_size"] for r in records] == [2, 2]
    assert not set(records[0]["seen"]) & set(records[1]["seen"])


@pytest.mark.slow
def test_deepspeed_launcher_leaves_no_shm_buffers_and_shares_cores(tmp_path):
    port = free_port()
    # DeepSpeed's shm.cpp names a job's buffers deepspeed_allreduce_buffer_<uid>_<addr>_<port>_<rank>: only this
    # job's count (another test file may be running a job of its own at the same time)
    ours = f"/dev/shm/deepspeed_allreduce_buffer_{os.getuid()}_*_{port}_*"
    before = set(glob.glob(ours))
    out = tmp_path / "out"
    cmd = launcher_cmd("deepspeed", TOY / "train.py", 2, port) + [
        "--config-file", str(TOY / "cfg.py"), "--opts", "output_dir", str(out), "solver.max_iter", "5"]
    result = run_cli(cmd)
    assert result.returncode == 0, result.stdout[-4000:]
    assert set(glob.glob(ours)) <= before
    cores = len(os.sched_getaffinity(0))
    assert f"{max(1, cores // 2)} threads per rank" in (out / "train.log").read_text()


@pytest.mark.slow
def test_generic_tools_train_entry_imports_user_code_in_spawned_workers(tmp_path):
    from tests.helpers import REPO

    out = tmp_path / "out"
    result = run_cli([sys.executable, str(REPO / "tools" / "train.py"), "--import", "codes", "--code-dir", str(DIGITS),
                      "--num-gpus", "2",
                      "--config-file", str(DIGITS / "configs" / "base.py"),
                      "--opts", "output_dir", str(out), "solver.max_iter", "20", "solver.eval_period", "0",
                      "solver.generator.lr_scheduler.params.max_iter", "100"])
    assert result.returncode == 0, result.stdout[-4000:]
    assert "step 20/20" in (out / "digits.log").read_text()


@pytest.mark.slow
def test_bad_config_in_spawned_workers_exits_2_without_traceback(tmp_path):
    result = run_cli([sys.executable, str(TOY / "train.py"), "--num-gpus", "2", "--config-file", str(TOY / "cfg.py"),
                      "--opts", "output_dir", str(tmp_path / "out"), "trainer.model.generator.hiden", "3"])
    assert result.returncode == 2, result.stdout[-3000:]
    assert "unexpected parameter 'hiden'" in result.stdout and "Traceback" not in result.stdout
