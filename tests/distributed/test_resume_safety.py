"""Crash safety with real processes: broken tags are skipped on resume; a one-rank save fails fast."""

import shutil
import time

import pytest

from engine.checkpoint import layout
from tests.helpers import TOY, free_port, launcher_cmd, run_cli

ONE_RANK_SAVE = '''
import os, sys, time
import torch.distributed as dist
from engine.checkpoint.state import check_ranks_agree, new_sync_group
from engine.errors import EngineError
dist.init_process_group("gloo")
group = new_sync_group(3)
if dist.get_rank() == 0:
    try:
        check_ranks_agree(group, "checkpoint tag", "iter_0000010")
    except EngineError as exc:
        print("CLEAR ERROR:", exc, flush=True)
        os._exit(3)
    os._exit(0)
time.sleep(60)  # rank 1 never saves
'''


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_save_on_one_rank_fails_with_a_message(tmp_path):
    script = tmp_path / "one_rank_save.py"
    script.write_text(ONE_RANK_SAVE)
    start = time.perf_counter()
    result = run_cli(launcher_cmd("torchrun", script, 2, free_port()), timeout=90)
    assert result.returncode != 0
    assert "CLEAR ERROR: checkpoint: rank 0 waited for every rank to save checkpoint tag" in result.stdout
    assert time.perf_counter() - start < 45  # 3 s timeout + process start, not a hang


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_resume_skips_incomplete_and_truncated_tags(tmp_path):
    out = tmp_path / "out"
    base = launcher_cmd("torchrun", TOY / "train.py", 2, free_port()) + ["--config-file", str(TOY / "cfg.py")]
    opts = ["--opts", "output_dir", str(out), "solver.max_iter", "16", "solver.max_keep", "1"]
    first = run_cli(base + opts + ["solver.stop_at_iter", "8"], timeout=120)
    assert first.returncode == 0, first.stdout[-3000:]
    root = out / "checkpoints"
    good = root / layout.tag_name(8)
    # a save killed before its marker, and a complete tag whose shard was truncated later
    killed, truncated = root / layout.tag_name(12), root / layout.tag_name(10)
    shutil.copytree(good, killed)
    (killed / layout.MARKER).unlink()
    shutil.copytree(good, truncated)
    shard = next((truncated / "generator").glob("*optim_states.pt"))
    shard.write_bytes(shard.read_bytes()[:100])

    base[base.index(next(a for a in base if a.startswith("--master_port")))] = f"--master_port={free_port()}"
    resumed = run_cli(base + ["--resume"] + opts, timeout=120)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    log = resumed.stdout
    assert f"skipping {killed}: no COMPLETE.json" in log
    assert f"skipping {truncated}: " in log and "truncated" in log
    assert f"resumed from {good} at step 8" in log
    # max_keep 1: only the final tag is left, and the garbage older than it is gone
    assert layout.list_tags(str(root)) == [layout.tag_name(16)]
    assert (root / "latest").read_text().strip() == layout.tag_name(16)
