"""Real 2-process runs (gloo on CPU) under torchrun and the deepspeed launcher, ZeRO 0-3."""

import json

import pytest

from engine.launch import free_port
from tests.helpers import TOY, launcher_cmd, read_records, run_cli

CASES = [("torchrun", 0), ("torchrun", 1), ("torchrun", 2), ("torchrun", 3), ("deepspeed", 2), ("deepspeed", 3)]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("launcher,stage", CASES, ids=[f"{l}-zero{s}" for l, s in CASES])
def test_two_process_training(tmp_path, launcher, stage):
    out = tmp_path / "out"
    cmd = launcher_cmd(launcher, TOY / "train.py", 2, free_port()) + [
        "--config-file", str(TOY / "cfg.py"),
        "--opts", "output_dir", str(out), "deepspeed.config", f"zero{stage}",
    ]
    result = run_cli(cmd, timeout=240)
    assert result.returncode == 0, result.stdout[-4000:]

    records = read_records(out, 2)
    assert all(r["world_size"] == 2 for r in records)
    # ranks see disjoint data: 40 steps × 8 samples each, drawn from disjoint halves of each epoch
    seen = [r["seen"] for r in records]
    assert len(seen[0]) == len(seen[1]) == 40 * 8
    per_epoch = 256 // 2
    for epoch in range(len(seen[0]) // per_epoch):
        chunk = [set(s[epoch * per_epoch:(epoch + 1) * per_epoch]) for s in seen]
        assert not chunk[0] & chunk[1], f"epoch {epoch}: ranks shared samples"
        assert len(chunk[0] | chunk[1]) == 256
    # training works: the loss falls; both ranks took the same number of steps
    for r in records:
        assert len(r["losses"]) == 40
        assert sum(r["losses"][-5:]) < 0.5 * sum(r["losses"][:5])

    ds = json.loads((out / "ds_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["train_micro_batch_size_per_gpu"] == 8
    assert ds["gradient_accumulation_steps"] == 1
    assert ds["train_batch_size"] == 16
    assert ds["optimizer"]["type"] == "AdamW" and ds["optimizer"]["params"]["lr"] == 3e-2
    log = (out / "train.log").read_text()
    assert "world size 2" in log and f"ZeRO stage {stage}" in log
