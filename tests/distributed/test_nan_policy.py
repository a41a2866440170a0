"""solver.nan_policy on 2 real processes: a NaN loss on rank 0 only at step 5."""

import json
import math

import pytest

from engine.launch import free_port
from tests.helpers import TOY, launcher_cmd, read_records, run_cli


def run_toy(out, stage, policy):
    cmd = launcher_cmd("torchrun", TOY / "train.py", 2, free_port()) + [
        "--config-file", str(TOY / "cfg.py"), "--opts", "output_dir", str(out), "deepspeed.config", f"zero{stage}",
        "solver.max_iter", "10", "solver.nan_policy", policy, "trainer.model.generator.nan_at_call", "5",
        "trainer.log_period", "10", "trainer.tensorboard", "False",
    ]
    return run_cli(cmd, timeout=240)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 2])
def test_skip_drops_the_update_on_every_rank(tmp_path, stage):
    out = tmp_path / "out"
    result = run_toy(out, stage, "skip")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "step 5: non-finite loss or gradients; the update was skipped on every rank (1 skipped so far)" in \
        (out / "train.log").read_text()
    for record in read_records(out, 2):
        sums = record["weight_sums"]
        assert len(sums) == 10 and all(math.isfinite(v) for v in sums)
        assert sums[4] == sums[3]  # step 5 changed nothing
        assert all(sums[i] != sums[i - 1] for i in range(1, 10) if i != 4)  # every other step did
    assert math.isnan(read_records(out, 2)[0]["losses"][4])


@pytest.mark.slow
def test_stop_saves_the_last_good_state_and_exits_non_zero(tmp_path):
    out = tmp_path / "out"
    result = run_toy(out, 2, "stop")
    assert result.returncode != 0
    assert "solver.nan_policy = 'stop': the loss or gradients became non-finite at step 5" in result.stdout
    assert "Traceback" not in result.stdout.split("solver.nan_policy = 'stop'")[0][-2000:]
    marker = out / "checkpoints" / "iter_0000005" / "COMPLETE.json"
    assert marker.exists()
    assert json.loads(marker.read_text())["world_size"] == 2
