"""tools/inspect_ckpt.py on a real run: tags, completeness with the reason, world size, stage, state present.

The JSON report and the error run the tool's ``main`` in this process; the human-readable
report runs ``tools/inspect_ckpt.py`` as a user would, so its command line stays covered.
"""

import json
import os
import sys

import pytest

from engine.checkpoint import layout
from tests.helpers import REPO, TOY, launcher_cmd, run_cli, run_tool


def inspect_cli(*args):
    return run_cli([sys.executable, str(REPO / "tools" / "inspect_ckpt.py"), *map(str, args)], timeout=60)


@pytest.mark.timeout(240)
def test_inspect_reports_tags_state_and_damage(tmp_path):
    out = tmp_path / "run"
    cmd = launcher_cmd("python", TOY / "train.py", 1, 0) + [
        "--config-file", str(TOY / "cfg.py"), "--opts", "output_dir", str(out), "solver.max_iter", "4",
        "solver.checkpoint_period", "2", "solver.max_keep", "5", "solver.ema", "{'enabled': True, 'decay_rate': 0.9}",
        "solver.generator.lr_scheduler", "{'enabled': True, 'type': 'StepLR', 'params': {'step_size': 2}}"]
    result = run_cli(cmd, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    root = out / "checkpoints"
    (root / layout.tag_name(9) / "generator").mkdir(parents=True)  # a save that never finished
    damaged = root / layout.tag_name(2) / layout.rank_state_file("", 0).lstrip("/")
    with open(damaged, "r+b") as f:
        f.truncate(100)
    listing = sorted(os.listdir(root))

    result = run_tool("inspect_ckpt", out, "--json")
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads(result.stdout)
    assert report["latest"] == layout.tag_name(4)
    tags = {t["tag"]: t for t in report["tags"]}
    assert [t["tag"] for t in report["tags"]] == [layout.tag_name(9), layout.tag_name(4), layout.tag_name(2)]
    assert not tags[layout.tag_name(9)]["complete"] and "no COMPLETE.json" in tags[layout.tag_name(9)]["reason"]
    assert not tags[layout.tag_name(2)]["complete"] and "truncated" in tags[layout.tag_name(2)]["reason"]
    good = tags[layout.tag_name(4)]
    assert good["complete"] and good["world_size"] == 1 and good["zero_stage"] == 2 and good["engines"] == ["generator"]
    assert good["iteration"] == 4 and good["ema"] is True and good["bytes"] > 0
    engine = good["engine_state"]["generator"]
    assert engine["optimizer"] and engine["optimizer_partitions"] == 1 and engine["lr_scheduler"]
    assert good["ranks"]["0"]["rng"] == ["numpy", "python", "torch"] and good["ranks"]["0"]["ema"] == "full"

    result = inspect_cli(root / layout.tag_name(4))  # one tag, human-readable
    assert result.returncode == 0, result.stdout[-3000:]
    assert "complete, step 4, world size 1, ZeRO 2, engines generator" in result.stdout
    assert "optimizer yes" in result.stdout and "LR scheduler yes" in result.stdout and "EMA full" in result.stdout
    assert sorted(os.listdir(root)) == listing  # nothing written

    result = run_tool("inspect_ckpt", tmp_path / "nope")
    assert result.returncode == 2 and "no such directory" in result.stdout
