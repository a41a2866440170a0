"""A rank that dies, raises or hangs ends the whole job non-zero in bounded time, and someone names it.

Faults come from ``tests/assets/faulty`` (``ENGINE_TEST_FAULT=<kind>:<rank>:<step>``). Under
torchrun and the deepspeed launcher, the launcher kills the other ranks once one exits; the
survivors that notice first log which rank failed (through the rendezvous store), and for a
SIGKILLed rank the launcher's own output names it. A hung rank is bounded by
``trainer.dist_timeout``; a hung or dead data-loader worker by ``dataloader.timeout`` / torch's
SIGCHLD handler, with a message naming the setting.
"""

import re
import time

import pytest

from tests.helpers import REPO, free_port, launcher_cmd, run_cli

FAULTY = REPO / "tests" / "assets" / "faulty"
#: generous bound from the fault to the job's exit on 2 busy cores (measured 2-15 s; a hang would be minutes)
AFTER_FAULT_S = 60


def run_faulty(tmp_path, launcher, fault, *opts, nproc=2):
    cmd = launcher_cmd(launcher, FAULTY / "train.py", nproc, free_port()) + [
        "--config-file", str(FAULTY / "cfg.py"), "--opts", "output_dir", str(tmp_path / "out"), *opts]
    start = time.perf_counter()
    result = run_cli(cmd, timeout=180, env={"ENGINE_TEST_FAULT": fault})
    elapsed, ended = time.perf_counter() - start, time.time()
    fault_at = re.search(r"FAULT \S+ at ([\d.]+)", result.stdout)
    assert fault_at, result.stdout[-3000:]
    after_fault = ended - float(fault_at.group(1))
    print(f"{launcher} {fault} {' '.join(opts)}: exit {result.returncode}, {after_fault:.1f}s after the fault "
          f"({elapsed:.1f}s in all)")
    assert result.returncode != 0, result.stdout[-3000:]
    assert after_fault < AFTER_FAULT_S, result.stdout[-3000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.timeout(200)
@pytest.mark.parametrize("launcher", ["torchrun", "deepspeed"])
def test_rank_raises(tmp_path, launcher):
    out = run_faulty(tmp_path, launcher, "raise:1:5")
    assert "rank 1 failed:" in out and "ValueError: faulty model: rank 1 fails at step 5" in out
    # the survivor that noticed names the failed rank and its error, without a gloo traceback of its own
    if "rank 0: a collective failed" in out:
        assert "rank 1 failed: ValueError: faulty model" in out
    assert "rank 0 failed:" not in out


@pytest.mark.slow
@pytest.mark.timeout(200)
@pytest.mark.parametrize("launcher", ["torchrun", "deepspeed"])
def test_rank_killed(tmp_path, launcher):
    out = run_faulty(tmp_path, launcher, "kill:1:5")
    if launcher == "torchrun":
        assert "failed (exitcode: -9) local_rank: 1" in out, out[-3000:]
    else:
        assert "'--local_rank=1'" in out and "exits with return code = -9" in out, out[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_hung_rank_is_bounded_by_dist_timeout(tmp_path):
    out = run_faulty(tmp_path, "torchrun", "hang:1:5", "trainer.dist_timeout", "5")
    assert "rank 0: a collective failed because another rank is gone or stuck (Timed out" in out, out[-3000:]
    assert "rank(s) 1 reported nothing" in out


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_hung_loader_worker_is_bounded_by_dataloader_timeout(tmp_path):
    out = run_faulty(tmp_path, "python", "worker_hang:0:0", "dataloader.num_workers", "1",
                     "dataloader.timeout", "3", nproc=1)
    assert "engine: error: no batch from 1 data-loader worker(s) within dataloader.timeout" in out, out[-3000:]
    assert "Traceback" not in out


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_dead_loader_worker_is_named_on_its_rank(tmp_path):
    out = run_faulty(tmp_path, "torchrun", "worker_crash:1:0", "dataloader.num_workers", "1")
    assert "rank 1 failed: a data-loader worker died (DataLoader worker (pid" in out, out[-3000:]
