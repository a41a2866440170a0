"""solver.nan_policy and the bad-batch records on 2 real processes, all in one start.

skip and stop: a NaN loss on rank 0 only at step 5. The bad-sample run (tests/assets/bad_sample.py)
accumulates 2 micro-batches a step; sample ``BAD`` has an infinite target (step 6, rank 1, second
micro-batch), sample ``SPIKE`` a target far off (step 13, rank 0, first micro-batch). What its
records in bad_batches.jsonl name is checked against what the model really saw: the indices of
each micro-batch, and each sample's seed against the draw the loader made with it. rollback: the
toy regression with inf inputs at chosen indices (tests/assets/toy/poison.py): a rollback run, the
same run with the culprit skip-listed from the start (the two must end bit-identical), one that
runs out of rollbacks, one that meets a bad sample before its first checkpoint; then
tools/replay_batch.py on what the rollback run recorded.
"""

import json
import math
import random

import pytest
import torch

from engine.checkpoint import layout
from engine.data.samplers import TrainingSampler
from engine.sentinel.records import read_bad_batches
from engine.weights import safe_load
from tests.assets import bad_sample
from tests.helpers import TOY, read_records, run_scenarios, run_tool

SKIP_STAGES = [0, 2]
BAD_AT, SPIKE_AT = (5, 1, 1), (12, 0, 0)  # (iteration, rank, micro-batch)
BAD, SPIKE = bad_sample.index_at(*BAD_AT), bad_sample.index_at(*SPIKE_AT)


def toy_argv(out, stage, policy):
    return ["--config-file", str(TOY / "cfg.py"), "--opts", "output_dir", str(out), "deepspeed.config", f"zero{stage}",
            "solver.max_iter", "10", "solver.nan_policy", policy, "trainer.model.generator.nan_at_call", "5",
            "trainer.log_period", "10", "trainer.tensorboard", "False"]


def bad_sample_argv(out):
    return ["--config-file", bad_sample.CFG, "--opts", "output_dir", str(out),
            "dataloader.train_data_set.bad_index", str(BAD), "dataloader.train_data_set.spike_index", str(SPIKE),
            "solver.spike.enabled", "True", "solver.spike.window", "8", "solver.spike.warmup", "4",
            "solver.checkpoint_period", "4", "trainer.log_period", "16", "trainer.tensorboard", "False"]


STEPS, PER_STEP = 10, 8


def index_at(rank, step, offset=3):
    """The dataset index rank ``rank`` reads at sample ``offset`` of step ``step`` (1-based) in the toy stream."""
    sampler = TrainingSampler(256, rank=rank, world_size=2, samples_per_step=PER_STEP, seed=3)
    return sampler.items((step - 1) * PER_STEP + offset, 1)[0][0]


FIRST, SECOND, EARLY = index_at(1, 5), index_at(0, 7), index_at(0, 1)


def poison_argv(out, poison, *extra):
    return ["--config-file", str(TOY / "cfg.py"), "--opts", "output_dir", str(out),
            "dataloader.train_data_set.name", "PoisonRegression", "dataloader.train_data_set.poison", str(poison),
            "trainer.name", "PoisonTrainer", "trainer.model.name", "PoisonModel", "solver.max_iter", str(STEPS),
            "solver.checkpoint_period", "2", "solver.nan_policy", "rollback", "trainer.log_period", "10",
            "trainer.tensorboard", "False", *extra]


@pytest.fixture(scope="module")
def nan_runs(tmp_path_factory):
    """skip at each stage, the bad-sample run, the rollback runs, then stop (which ends the start), in one 2-rank start."""
    tmp = tmp_path_factory.mktemp("nan")
    runs = [(f"skip-zero{s}", toy_argv(tmp / f"skip-zero{s}", s, "skip")) for s in SKIP_STAGES]
    runs.append(("bad-sample", bad_sample_argv(tmp / "bad-sample")))
    runs += [("rollback", poison_argv(tmp / "rollback", [FIRST])),
             ("skiplisted", poison_argv(tmp / "skiplisted", [FIRST], "dataloader.skip_samples", str([FIRST]))),
             ("exhausted", poison_argv(tmp / "exhausted", [FIRST, SECOND], "solver.max_rollbacks", "1")),
             ("early", poison_argv(tmp / "early", [EARLY]))]
    runs.append(("stop", toy_argv(tmp / "stop", 2, "stop")))
    outcomes = run_scenarios(runs, tmp / "start", imports=[TOY / "toy.py", TOY / "poison.py", bad_sample.__file__],
                             timeout=700)
    return {name: (tmp / name, outcomes[name]) for name, _ in runs}


@pytest.mark.slow
@pytest.mark.timeout(900)
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
@pytest.mark.timeout(900)
def test_stop_saves_the_last_good_state_and_exits_non_zero(nan_runs):
    out, result = nan_runs["stop"]
    assert all(code != 0 for code in result.codes), result.codes
    assert "solver.nan_policy = 'stop': the loss or gradients became non-finite at step 5" in result.stdout
    assert "Traceback" not in result.stdout.split("solver.nan_policy = 'stop'")[0][-2000:]
    marker = out / "checkpoints" / "iter_0000005" / "COMPLETE.json"
    assert marker.exists()
    assert json.loads(marker.read_text())["world_size"] == 2


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_rollback_skips_the_culprit_and_ends_as_a_run_skip_listed_from_the_start(nan_runs):
    out, result = nan_runs["rollback"]
    assert result.codes == [0, 0], result.stdout[-4000:]
    log = (out / "train.log").read_text()
    assert f"resumed from {out / 'checkpoints' / 'iter_0000004'} at step 4" in log  # a real reload
    assert (f"step 5: non-finite loss; dataset indices [{FIRST}] skip-listed (dataloader.skip_samples is now "
            f"[{FIRST}]); rolled back to iter_0000004 (step 4); rollback 1 of 3") in log
    lines = [json.loads(line) for line in (out / "rollbacks.jsonl").read_text().splitlines()]
    assert [(r["step"], r["rank"], r["checkpoint"], r["rolled_back_to"]) for r in lines] == \
        [(5, 0, "iter_0000004", 4), (5, 1, "iter_0000004", 4)]
    assert lines[0]["culprits"] == [] and [c["index"] for c in lines[1]["culprits"]] == [FIRST]
    assert lines[1]["culprits"][0]["nonfinite"] == ["loss"]  # target_abs stays finite
    assert lines[1]["micro_batches"][0][3][0] == FIRST
    rolled = torch.load(out / "live.pt")
    skiplisted = torch.load(nan_runs["skiplisted"][0] / "live.pt")
    assert nan_runs["skiplisted"][1].codes == [0, 0]
    assert rolled.keys() == skiplisted.keys() and all(torch.equal(rolled[k], skiplisted[k]) for k in rolled)
    state = safe_load.load(layout.rank_state_file(str(out / "checkpoints" / "iter_0000010"), 1))["trainer"]
    assert state["skip_samples"] == [FIRST] and state["rollbacks"] == 1  # a --resume keeps skipping it


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_out_of_rollbacks_or_without_a_checkpoint_the_run_stops_as_stop_does(nan_runs):
    out, result = nan_runs["exhausted"]
    assert all(code != 0 for code in result.codes), result.codes
    assert "rollback 1 of 1" in (out / "train.log").read_text()
    assert (f"solver.nan_policy = 'rollback' cannot roll back: solver.max_rollbacks (1) reached; culprit samples "
            f"[{SECOND}] not skipped; the loss or gradients became non-finite at step 7") in result.stdout
    assert (out / "checkpoints" / "iter_0000007" / "COMPLETE.json").exists()  # the last good state, as 'stop'
    out, result = nan_runs["early"]
    assert all(code != 0 for code in result.codes), result.codes
    assert "cannot roll back: no complete checkpoint in" in result.stdout
    assert f"(culprit samples [{EARLY}])" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_replay_names_the_culprit_of_a_recorded_bad_step(nan_runs):
    out, _ = nan_runs["rollback"]
    found = run_tool("replay_batch", out / "checkpoints" / "iter_0000004", f"{out / 'rollbacks.jsonl'}:2",
                     "--code-dir", TOY, "--import", "poison", "--json")
    assert found.returncode == 1, found.stdout[-3000:]
    report = json.loads(found.stdout.strip().splitlines()[-1])
    assert report["culprits"] == [FIRST] and report["rank"] == 1
    assert [s["position"] for s in report["micro_batches"][0]["samples"]] == [3]
    incomplete = out / "checkpoints" / "iter_0000099"
    incomplete.mkdir()
    refused = run_tool("replay_batch", incomplete, f"{out / 'rollbacks.jsonl'}:2")
    assert refused.returncode == 2 and "is not a complete checkpoint" in refused.stdout


@pytest.mark.slow
@pytest.mark.timeout(500)
@pytest.mark.parametrize("run", ["skip-zero0", "stop"])
def test_every_policy_records_the_non_finite_step_before_acting(nan_runs, run):
    out, _ = nan_runs[run]
    records = read_bad_batches(str(out / "bad_batches.jsonl"))
    assert [(r["step"], r["rank"], r["reason"]) for r in records] == [(5, 0, "nonfinite"), (5, 1, "nonfinite")]
    assert math.isnan(records[0]["losses"]["loss"]) and math.isfinite(records[1]["losses"]["loss"])
    assert records[0]["checkpoint"] is None  # the stop's own save comes after the record
    seen = [json.loads((out / f"record_rank{r}.json").read_text())["seen"] for r in (0, 1)] if run != "stop" else None
    for record in records:
        (batch,) = record["micro_batches"]  # no accumulation: one micro-batch of 8
        assert len(batch) == 8
        if seen:
            assert [i for i, _ in batch] == seen[record["rank"]][32:40]


def bad_records(nan_runs):
    return read_bad_batches(str(nan_runs["bad-sample"][0] / "bad_batches.jsonl"))


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_bad_sample_run_gives_one_strict_json_line_per_rank_for_each_bad_step(nan_runs):
    out, result = nan_runs["bad-sample"]
    assert result.codes == [0, 0], result.stdout[-4000:]
    for line in (out / "bad_batches.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"non-standard JSON {name} in {line}"))
    found = [(r["step"], r["iteration"], r["rank"], r["reason"], r["epoch"]) for r in bad_records(nan_runs)]
    assert found == [(6, 5, 0, "nonfinite", 5), (6, 5, 1, "nonfinite", 5), (13, 12, 0, "spike", 12),
                     (13, 12, 1, "spike", 12)]


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_bad_sample_records_name_the_micro_batches_the_model_saw_with_their_seeds(nan_runs):
    out, accumulation = nan_runs["bad-sample"][0], 2
    for record in bad_records(nan_runs):
        seen = json.loads((out / f"batches_rank{record['rank']}.json").read_text())
        for m, batch in enumerate(record["micro_batches"]):
            saw = seen[record["iteration"] * accumulation + m]
            assert [index for index, _ in batch] == [index for index, _ in saw]
            for (_, seed), (_, draw) in zip(batch, saw):
                random.seed(seed)
                assert random.random() == draw  # the loader seeded this sample with this seed
    by_place = {(r["iteration"], r["rank"]): r["micro_batches"] for r in bad_records(nan_runs)}
    assert BAD in [i for i, _ in by_place[BAD_AT[:2]][BAD_AT[2]]]
    assert SPIKE in [i for i, _ in by_place[SPIKE_AT[:2]][SPIKE_AT[2]]]


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_bad_sample_records_hold_losses_grad_norm_z_and_the_checkpoint_then(nan_runs):
    bad0, bad1, spike0, spike1 = bad_records(nan_runs)
    assert set(bad0["losses"]) == {"loss", "abs_err"} == set(spike0["losses"])
    assert bad1["losses"]["loss"] == math.inf and math.isfinite(bad0["losses"]["loss"])  # rank 1 held the bad sample
    assert bad0["z"] is None and (bad0["grad_norm"] is None or not math.isfinite(bad0["grad_norm"]))
    assert spike0["losses"]["loss"] > 10 * spike1["losses"]["loss"]  # rank 0 held the spike
    assert spike0["z"] == spike1["z"] > 6.0
    assert math.isfinite(spike0["grad_norm"]) and spike0["grad_norm"] > 0
    assert bad0["checkpoint"] == "iter_0000004" and spike0["checkpoint"] == "iter_0000012"
    log = (nan_runs["bad-sample"][0] / "train.log").read_text()
    assert log.count("loss spike") == 1
    mean = spike0["losses"]["loss"] / 2 + spike1["losses"]["loss"] / 2
    assert f"step 13: loss spike: {mean:.6g} is {spike0['z']:.1f} standard deviations above the mean of the 8 steps" in log
