"""engine.sentinel in one process: the spike window's verdicts and state, the bad_batches.jsonl format, the config keys.

The records of real runs (2 ranks, a poisoned sample) are tested in tests/distributed/test_bad_batches.py.
"""

import copy
import json
import logging
import math
import statistics

import pytest

import engine.config.no_effect as no_effect
from engine.config import build_cfg
from engine.errors import ConfigError, EngineError
from engine.sentinel.records import BadBatchLog, make_record, micro_batch_items, one_per_replica, read_bad_batches
from engine.sentinel.spike import SpikeWindow
from engine.data.samplers import TrainingSampler

MINIMAL = {
    "trainer": {"model": {"name": "M", "generator": {"name": "Net"}}},
    "dataloader": {"train_data_set": {"name": "D", "transformer": []}},
}
LOSSES = [1.0, 0.9, 1.1, 0.95, 1.05, 0.98, 1.02, 0.97]


def test_no_verdict_while_warming_up_then_the_z_score_of_the_steps_before():
    window = SpikeWindow(size=100, warmup=len(LOSSES), threshold=6.0)
    assert [window.judge(x) for x in LOSSES] == [None] * len(LOSSES)
    mean, std = statistics.mean(LOSSES), statistics.stdev(LOSSES)
    spike = window.judge(mean + 6.5 * std)
    assert spike is not None and spike.mean == pytest.approx(mean) and spike.std == pytest.approx(std)
    assert spike.z == pytest.approx(6.5) and spike.steps == len(LOSSES)
    assert window.judge(statistics.mean(window.losses) - 100.0) is None  # one-sided: a drop is never a spike


def test_a_spike_joins_the_window_so_a_lasting_rise_is_flagged_once():
    window = SpikeWindow(size=8, warmup=4, threshold=3.0)
    for x in LOSSES:
        window.judge(x)
    verdicts = [window.judge(5.0) for _ in range(8)]  # the loss moved up for good
    assert verdicts[0] is not None and verdicts[0].steps == 8 and verdicts[1:] == [None] * 7  # a full window: 8 before
    assert list(window.losses) == [5.0] * 8  # size bounds the window


def test_a_non_finite_loss_is_neither_judged_nor_kept():
    window = SpikeWindow(size=8, warmup=2, threshold=3.0)
    for x in (1.0, 1.1, math.nan, math.inf):
        assert window.judge(x) is None
    assert list(window.losses) == [1.0, 1.1]


def test_a_constant_window_calls_any_rise_a_spike():
    window = SpikeWindow(size=8, warmup=3, threshold=6.0)
    for _ in range(3):
        window.judge(2.0)
    assert window.judge(2.0) is None
    assert window.judge(2.0 + 1e-9).z == math.inf


def test_a_loaded_window_judges_as_the_one_that_was_saved():
    whole, first = SpikeWindow(8, 4, 2.0), SpikeWindow(8, 4, 2.0)
    stream = LOSSES + [1.3, 0.9, 1.6, 1.0, 2.5, 1.1]
    for x in stream[:6]:
        whole.judge(x), first.judge(x)
    resumed, fresh = SpikeWindow(8, 4, 2.0), SpikeWindow(8, 4, 2.0)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    verdicts = [whole.judge(x) for x in stream[6:]]
    assert verdicts == [resumed.judge(x) for x in stream[6:]] and any(verdicts)
    assert verdicts != [fresh.judge(x) for x in stream[6:]]  # without the saved losses it would judge otherwise


def test_a_smaller_window_keeps_the_newest_saved_losses_and_bad_state_is_refused():
    saved = SpikeWindow(8, 2, 3.0)
    for x in LOSSES:
        saved.judge(x)
    small = SpikeWindow(3, 2, 3.0)
    small.load_state_dict(saved.state_dict())
    assert list(small.losses) == LOSSES[-3:]
    with pytest.raises(EngineError, match="not a list of numbers"):
        small.load_state_dict({"losses": "1.0"})


def test_micro_batch_items_are_the_sampler_stream_cut_at_each_micro_batch():
    sampler = TrainingSampler(40, rank=1, world_size=2, samples_per_step=8, seed=5)
    stream = iter(sampler)
    flat = [next(stream) for _ in range(24)]  # three steps
    assert micro_batch_items(sampler, 8, 4, 2) == [flat[8:12], flat[12:16]]  # step 2 of this rank
    assert micro_batch_items(object(), 8, 4, 2) is None  # a sampler that cannot name its samples


def test_records_are_strict_json_lines_read_back_to_floats(tmp_path):
    log = BadBatchLog(str(tmp_path))
    lines = [make_record(step=3, iteration=2, rank=r, reason="nonfinite", micro_batches=[[(7, 11), (8, 12)]],
                         losses={"loss": [math.inf, math.nan][r], "l1": 0.5}, grad_norm=-math.inf, z=None,
                         checkpoint="iter_0000002", epoch=2) for r in (0, 1)]
    assert log.append(lines)
    text = (tmp_path / "bad_batches.jsonl").read_text()
    first = json.loads(text.splitlines()[0], parse_constant=lambda name: pytest.fail(name))
    assert list(first) == ["step", "iteration", "rank", "reason", "micro_batches", "losses", "grad_norm", "z",
                           "checkpoint", "epoch"]
    assert first["losses"] == {"loss": "inf", "l1": 0.5} and first["micro_batches"] == [[[7, 11], [8, 12]]]
    back = read_bad_batches(str(tmp_path / "bad_batches.jsonl"))
    assert back[0]["losses"]["loss"] == math.inf and math.isnan(back[1]["losses"]["loss"])
    assert back[0]["grad_norm"] == -math.inf and back[0]["z"] is None
    with pytest.raises(ValueError, match="reason"):
        make_record(step=1, iteration=0, rank=0, reason="odd", micro_batches=None, losses={}, grad_norm=None,
                    z=None, checkpoint=None, epoch=0)


def test_a_torn_last_line_is_cut_before_the_next_append(tmp_path, caplog):
    path = tmp_path / "bad_batches.jsonl"
    record = make_record(step=1, iteration=0, rank=0, reason="spike", micro_batches=[[(1, 2)]], losses={"loss": 9.0},
                         grad_norm=1.5, z=7.0, checkpoint=None, epoch=0)
    path.write_text(json.dumps(record) + "\n" + '{"step": 2, "itera')  # a crash in the middle of a write
    assert [r["step"] for r in read_bad_batches(str(path))] == [1]  # a reader skips it
    with caplog.at_level(logging.WARNING, logger="engine"):
        BadBatchLog(str(tmp_path)).append([dict(record, step=5)])
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 5]
    assert "cut off a torn last line" in caplog.text


def test_a_record_that_cannot_be_written_is_an_error_line_not_a_crash(tmp_path, caplog):
    log = BadBatchLog(str(tmp_path / "missing"))
    with caplog.at_level(logging.ERROR, logger="engine"):
        assert not log.append([{"step": 1}])
    assert f"could not append 1 record(s) to {log.path}" in caplog.text


def test_one_part_per_data_parallel_rank_in_rank_order():
    """Pipeline stages and tensor-parallel shards of one replica gather the same story: it is kept once."""
    parts = [{"rank": 1, "stage": 0}, {"rank": 0, "stage": 0}, {"rank": 1, "stage": 1}, {"rank": 0, "stage": 1}]
    assert one_per_replica(parts, lambda part: part["rank"]) == [{"rank": 0, "stage": 0}, {"rank": 1, "stage": 0}]


def cfg_with(spike):
    data = copy.deepcopy(MINIMAL)
    data["solver"] = {"spike": spike}
    return build_cfg(data)


@pytest.mark.parametrize("spike, message", [
    ({"enabled": "yes"}, r"solver\.spike\.enabled: expected bool, got 'yes'"),
    ({"windows": 50}, r"solver\.spike\.windows: unknown key\. Did you mean 'window'\?.* Valid keys here: enabled, window, warmup, z"),
    ({"window": 1}, r"solver\.spike\.window: 1 is below the minimum 2"),
    ({"z": "6"}, r"solver\.spike\.z: expected float, got '6'"),
    ({"window": 10, "warmup": 20}, r"solver\.spike\.warmup = 20 is larger than solver\.spike\.window = 10.*\[2, 10\]"),
    ({"z": 0.0}, r"solver\.spike\.z = 0\.0: expected a threshold above 0"),
])
def test_spike_keys_are_checked_with_their_path_value_and_expectation(spike, message):
    with pytest.raises(ConfigError, match=message):
        cfg_with(spike)


def test_spike_keys_written_while_it_is_off_are_said_once(caplog, monkeypatch):
    monkeypatch.setattr(no_effect, "_said", set())
    with caplog.at_level(logging.WARNING, logger="engine"):
        cfg_with({"window": 50, "z": 4.0})
        cfg_with({"window": 50, "z": 4.0})
        cfg_with({"enabled": True, "window": 50})  # on: nothing to say
    said = [r.getMessage() for r in caplog.records if "no effect" in r.getMessage()]
    assert said == ["solver.spike.window = 50, solver.spike.z = 4.0 have no effect while solver.spike.enabled is False"]
    cfg = cfg_with({"enabled": True})
    assert (cfg.SOLVER.SPIKE.WINDOW, cfg.SOLVER.SPIKE.WARMUP, cfg.SOLVER.SPIKE.Z) == (100, 20, 6.0)
