"""bad_batches.jsonl on 2 real processes: a non-finite sample and a loss spike, at known places, in one run.

The run (tests/assets/bad_sample.py) accumulates 2 micro-batches a step; sample ``BAD`` has an
infinite target (step 6, rank 1, second micro-batch), sample ``SPIKE`` a target far off
(step 13, rank 0, first micro-batch). What the records name is checked against what the model
really saw: the indices of each micro-batch, and each sample's seed against the draw the loader
made with it.
"""

import json
import math
import random

import pytest

from tests.assets import bad_sample
from tests.helpers import run_scenarios

BAD_AT, SPIKE_AT = (5, 1, 1), (12, 0, 0)  # (iteration, rank, micro-batch)
BAD, SPIKE = bad_sample.index_at(*BAD_AT), bad_sample.index_at(*SPIKE_AT)


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_batches")
    out = tmp / "run"
    argv = ["--config-file", bad_sample.CFG, "--opts", "output_dir", str(out),
            "dataloader.train_data_set.bad_index", str(BAD), "dataloader.train_data_set.spike_index", str(SPIKE),
            "solver.spike.enabled", "True", "solver.spike.window", "8", "solver.spike.warmup", "4",
            "solver.checkpoint_period", "4", "trainer.log_period", "16", "trainer.tensorboard", "False"]
    outcome = run_scenarios([("run", argv)], tmp / "start", imports=[bad_sample.__file__], timeout=300)["run"]
    assert outcome.codes == [0, 0], outcome.stdout[-4000:]
    return out


def records(out):
    return [json.loads(line) for line in (out / "bad_batches.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_one_line_per_rank_for_each_bad_step_in_strict_json(bad_run):
    lines = (bad_run / "bad_batches.jsonl").read_text().splitlines()
    for line in lines:
        json.loads(line, parse_constant=lambda name: pytest.fail(f"non-standard JSON {name} in {line}"))
    found = [(r["step"], r["iteration"], r["rank"], r["reason"], r["epoch"]) for r in records(bad_run)]
    assert found == [(6, 5, 0, "nonfinite", 5), (6, 5, 1, "nonfinite", 5), (13, 12, 0, "spike", 12), (13, 12, 1, "spike", 12)]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_each_record_names_the_micro_batches_the_model_saw_with_their_seeds(bad_run):
    accumulation = 2
    for record in records(bad_run):
        seen = json.loads((bad_run / f"batches_rank{record['rank']}.json").read_text())
        for m, batch in enumerate(record["micro_batches"]):
            saw = seen[record["iteration"] * accumulation + m]
            assert [index for index, _ in batch] == [index for index, _ in saw]
            for (_, seed), (_, draw) in zip(batch, saw):
                random.seed(seed)
                assert random.random() == draw  # the loader seeded this sample with this seed
    by_place = {(r["iteration"], r["rank"]): r["micro_batches"] for r in records(bad_run)}
    assert BAD in [i for i, _ in by_place[BAD_AT[:2]][BAD_AT[2]]]
    assert SPIKE in [i for i, _ in by_place[SPIKE_AT[:2]][SPIKE_AT[2]]]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_records_hold_losses_grad_norm_z_and_the_checkpoint_then(bad_run):
    bad0, bad1, spike0, spike1 = records(bad_run)
    assert set(bad0["losses"]) == {"loss", "abs_err"} == set(spike0["losses"])
    assert bad1["losses"]["loss"] == "inf" and math.isfinite(bad0["losses"]["loss"])  # rank 1 held the bad sample
    assert bad0["z"] is None and bad0["grad_norm"] in (None, "inf", "nan")
    assert spike0["losses"]["loss"] > 10 * spike1["losses"]["loss"]  # rank 0 held the spike
    assert spike0["z"] == spike1["z"] > 6.0
    assert isinstance(spike0["grad_norm"], float) and spike0["grad_norm"] > 0
    assert bad0["checkpoint"] == "iter_0000004" and spike0["checkpoint"] == "iter_0000012"
    log = (bad_run / "train.log").read_text()
    assert log.count("loss spike") == 1
    assert f"step 13: loss spike: {spike0['losses']['loss'] / 2 + spike1['losses']['loss'] / 2:.6g}" in log
    assert "solver.spike.z 6); its samples are in" in log
