"""solver.nan_policy on 2 real processes: a NaN loss on rank 0 only at step 5."""

import json
import math

import pytest

from tests.helpers import TOY, read_records, run_scenarios

SKIP_STAGES = [0, 2]


def toy_argv(out, stage, policy):
    return ["--config-file", str(TOY / "cfg.py"), "--opts", "output_dir", str(out), "deepspeed.config", f"zero{stage}",
            "solver.max_iter", "10", "solver.nan_policy", policy, "trainer.model.generator.nan_at_call", "5",
            "trainer.log_period", "10", "trainer.tensorboard", "False"]


@pytest.fixture(scope="module")
def nan_runs(tmp_path_factory):
    """The skip policy at each stage, then the stop policy (which ends the start), in one 2-rank start."""
    tmp = tmp_path_factory.mktemp("nan")
    runs = [(f"skip-zero{s}", toy_argv(tmp / f"skip-zero{s}", s, "skip")) for s in SKIP_STAGES]
    runs.append(("stop", toy_argv(tmp / "stop", 2, "stop")))
    outcomes = run_scenarios(runs, tmp / "start", imports=[TOY / "toy.py"], timeout=400)
    return {name: (tmp / name, outcomes[name]) for name, _ in runs}


@pytest.mark.slow
@pytest.mark.timeout(500)
@pytest.mark.parametrize("stage", SKIP_STAGES)
def test_skip_drops_the_update_on_every_rank(nan_runs, stage):
    out, result = nan_runs[f"skip-zero{stage}"]
    assert result.codes == [0, 0], result.stdout[-4000:]
    assert "step 5: non-finite loss or gradients; the update was skipped on every rank (1 skipped so far)" in \
        (out / "train.log").read_text()
    for record in read_records(out, 2):
        sums = record["weight_sums"]
        assert len(sums) == 10 and all(math.isfinite(v) for v in sums)
        assert sums[4] == sums[3]  # step 5 changed nothing
        assert all(sums[i] != sums[i - 1] for i in range(1, 10) if i != 4)  # every other step did
    assert math.isnan(read_records(out, 2)[0]["losses"][4])


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_stop_saves_the_last_good_state_and_exits_non_zero(nan_runs):
    out, result = nan_runs["stop"]
    assert all(code != 0 for code in result.codes), result.codes
    assert "solver.nan_policy = 'stop': the loss or gradients became non-finite at step 5" in result.stdout
    assert "Traceback" not in result.stdout.split("solver.nan_policy = 'stop'")[0][-2000:]
    marker = out / "checkpoints" / "iter_0000005" / "COMPLETE.json"
    assert marker.exists()
    assert json.loads(marker.read_text())["world_size"] == 2
