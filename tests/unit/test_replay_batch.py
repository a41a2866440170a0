"""tools/replay_batch.py's record reading and report, without a run (the replay itself: test_nan_policy.py)."""

import json

import pytest

from engine.sentinel.culprits import MicroBatchVerdict, SampleVerdict, Verdict
from tests.helpers import load_tool

RECORD = {"step": 5, "iteration": 4, "rank": 1, "micro_batches": [[[7, 11], [9, 13]]], "epoch": 4,
          "checkpoint": "iter_0000004"}


@pytest.fixture(scope="module")
def tool():
    return load_tool("replay_batch")


def test_a_record_is_json_text_a_numbered_line_or_a_files_last_line(tool, tmp_path):
    path = tmp_path / "rollbacks.jsonl"
    path.write_text(json.dumps(dict(RECORD, rank=0)) + "\n" + json.dumps(RECORD) + "\n")
    assert tool.read_record(json.dumps(RECORD)) == RECORD
    assert tool.read_record(f"{path}:1")["rank"] == 0 and tool.read_record(f"{path}:2") == RECORD
    assert tool.read_record(str(path)) == RECORD
    for bad, message in [(f"{path}:3", "has 2 record line"), (str(tmp_path / "none"), "neither a JSON object"),
                         ('{"step": 5}', "missing micro_batches, iteration"), ("{oops", "not JSON")]:
        with pytest.raises(tool.ReplayError, match=message):
            tool.read_record(bad)


def verdicts(bad):
    alone = [Verdict({"loss": float("inf") if bad and i == 1 else 0.5}, ["loss"] if bad and i == 1 else [])
             for i in range(2)]
    whole = Verdict({"loss": float("inf") if bad else 0.5}, ["loss"] if bad else [])
    return [MicroBatchVerdict(0, [(7, 11), (9, 13)], whole,
                              [SampleVerdict(0, i, index, seed, alone[i]) for i, (index, seed) in enumerate([(7, 11), (9, 13)])])]


def test_the_report_names_the_culprits_or_says_not_reproduced_and_an_older_tag(tool):
    findings, lines = tool.build_report(RECORD, "/run/checkpoints/iter_0000004", verdicts(True))
    assert findings["culprits"] == [9] and findings["nonfinite"] and findings["micro_batches"][0]["nonfinite"] == ["loss"]
    assert lines[-1] == "culprit dataset indices: [9] (leave them out with dataloader.skip_samples)"
    assert not any(line.startswith("note:") for line in lines)
    findings, lines = tool.build_report(RECORD, "/run/checkpoints/iter_0000002", verdicts(False))
    assert findings == dict(findings, culprits=[], nonfinite=False)
    assert lines[1].startswith("note: the tag holds the weights after step 2; the bad step ran on those after step 4")
    assert lines[-1] == "every output is finite: not reproduced"
