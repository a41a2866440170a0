"""The kill-and-resume harness (``benchmarks/fault_injection.py``) with a few trials: SIGKILLs at random
moments and inside saves never make a resume load a partial tag, and the final weights, optimizer
state, losses and samples are bitwise those of the uninterrupted run.

The harness kills every process it starts (torchrun and its ranks) on any exit path.
"""

import sys

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import fault_injection as fi  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~90 s alone; up to 306 s measured beside another test file on 2 busy cores
def test_kills_and_resumes_are_bitwise_exact(tmp_path):
    # shorter runs than the benchmark's, one kill per trial (inside a save or at a random moment)
    settings = fi.Settings(steps=30, max_kills=1, save_kill_share=0.7)
    lines = []
    results = fi.run_harness(3, settings, seed=2, workdir=tmp_path, echo=lines.append)
    totals = fi.summary(results)
    print("\n".join(lines), totals)
    assert totals["mismatches"] == 0 and totals["bad_resumes"] == 0, "\n".join(lines)
    # bad_resumes == 0: every resume loaded the newest tag the harness itself saw complete at the kill
    assert totals["kills"] >= 1


def test_harness_finds_a_mismatch(tmp_path):
    """The comparison is not vacuous: a run whose records differ is reported."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    tail = tmp_path / "tail"  # a last launch that resumed at step 1 and matches
    for d, records in ((ref, "[0.5, 0.1], [1, 2]"), (run, "[0.25, 0.1], [1, 2]"), (tail, "[0.1], [2]")):
        d.mkdir()
        losses, seen = records.split("], ")
        for rank in range(fi.WORLD):
            (d / f"record_rank{rank}.json").write_text(
                f'{{"losses": {losses}], "seen": {seen}, "lr": {{"generator": 0.1}}}}')
    assert fi.record_diffs(ref, run, fi.Settings(steps=2), resumed_at=0) == [
        "rank 0: losses after step 0 differ", "rank 1: losses after step 0 differ"]
    assert fi.record_diffs(ref, tail, fi.Settings(steps=2), resumed_at=1) == []
    assert fi.record_diffs(ref, tail, fi.Settings(steps=2), resumed_at=0) != []
