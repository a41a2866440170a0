"""A save that cannot write (file-size limit standing in for a full disk; a file where a folder goes)
ends with one clear error naming the path and the OS reason; the previous complete tag stays the
newest complete one, ``latest`` still names it, and the next ``--resume`` skips the half tag.

No root tricks (root ignores chmod): ``tests/assets/faulty/fsize_limit.py`` sets RLIMIT_FSIZE
for the whole job, so torch's writer hits a real EFBIG.
"""

import os
import sys

import pytest

from engine.checkpoint import layout
from tests.helpers import REPO, TOY, free_port, launcher_cmd, run_cli

LIMIT = REPO / "tests" / "assets" / "faulty" / "fsize_limit.py"
#: 41k parameters: model and optimizer files of ~170-250 KB, far past the 64 KB limit; logs stay below it
BIG = ["trainer.model.generator.hidden", "4096", "solver.checkpoint_period", "2"]


def toy(launcher, out, *opts, resume=False, prefix=(), nproc=2):
    cmd = list(prefix) + launcher_cmd(launcher, TOY / "train.py", nproc, free_port()) + [
        "--config-file", str(TOY / "cfg.py"), *(["--resume"] if resume else []),
        "--opts", "output_dir", str(out), *BIG, *opts]
    return run_cli(cmd, timeout=150)


def assert_previous_tag_survives(out, good_step, bad_step):
    root = out / "checkpoints"
    assert layout.complete_tags(str(root))[0] == layout.tag_name(good_step)
    assert (root / "latest").read_text().strip() == layout.tag_name(good_step)
    assert not layout.check_complete(str(root / layout.tag_name(bad_step)))[0] or not (
        root / layout.tag_name(bad_step)).is_dir()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_file_size_limit_during_save(tmp_path):
    out = tmp_path / "out"
    first = toy("torchrun", out, "solver.max_iter", "4")
    assert first.returncode == 0, first.stdout[-3000:]

    limited = toy("torchrun", out, "solver.max_iter", "8", resume=True,
                  prefix=[sys.executable, str(LIMIT), str(64 * 1024)])
    assert limited.returncode != 0
    bad = out / "checkpoints" / layout.tag_name(6)
    for rank in (0, 1):
        assert f"checkpoint: rank {rank} could not write {bad}{os.sep}" in limited.stdout, limited.stdout[-3000:]
    assert "[Errno 27] File too large: file-size limit 65536 bytes" in limited.stdout
    assert_previous_tag_survives(out, 4, 6)

    resumed = toy("torchrun", out, "solver.max_iter", "8", resume=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"skipping {bad}: no COMPLETE.json" in resumed.stdout
    assert f"resumed from {out / 'checkpoints' / layout.tag_name(4)} at step 4" in resumed.stdout
    assert layout.complete_tags(str(out / "checkpoints"))[0] == layout.tag_name(8)


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_file_where_the_tag_folder_goes(tmp_path):
    out = tmp_path / "out"
    first = toy("python", out, "solver.max_iter", "4", nproc=1)
    assert first.returncode == 0, first.stdout[-3000:]
    blocker = out / "checkpoints" / layout.tag_name(6)
    blocker.write_text("not a folder")
    second = toy("python", out, "solver.max_iter", "8", resume=True, nproc=1)
    assert second.returncode == 2, second.stdout[-3000:]
    assert f"engine: error: checkpoint: rank 0 could not write {blocker}" in second.stdout, second.stdout[-3000:]
    assert "[Errno " in second.stdout and "Traceback" not in second.stdout
    assert_previous_tag_survives(out, 4, 6)
