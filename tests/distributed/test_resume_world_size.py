"""Resume on a different world size: a ZeRO-2 tag saved by 1 rank resumed on 2 (torchrun), then back to 1.

Not bit-exact (the global batch and the RNG streams change with the world size), so the
checks are what a user needs: the step, the LR schedule and the loss level go on where they
were, the weights stay finite, and the tag that was resumed from is byte-for-byte unchanged.
"""

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from engine.checkpoint import layout, universal
from tests.helpers import TOY, free_port, launcher_cmd, run_cli

STEPS = 18
LR, STEP_SIZE, GAMMA = 3e-2, 5, 0.7
RECORD_TRAIN = f'''
import json, os, sys
sys.path.insert(0, {str(TOY)!r})
import toy
from engine import comm
from engine.trainer.build import BUILD_TRAINER_REGISTRY
from engine.schedule.scheduler import BaseScheduler

@BUILD_TRAINER_REGISTRY.register()
class StepRecordTrainer(toy.ToyTrainer):
    """Appends (step, loss, lr, world size) after every step, so runs cut by stop_at_iter leave a record."""
    def iterate_after(self, epoch, loss_dict):
        super().iterate_after(epoch, loss_dict)
        path = os.path.join(self.cfg.OUTPUT_DIR, f"steps_rank{{comm.get_rank()}}.jsonl")
        with open(path, "a") as f:
            f.write(json.dumps({{"step": self.iter + 1, "loss": float(loss_dict["loss"]),
                                "lr": self.model.learning_rates()["generator"], "ws": comm.get_world_size()}}) + "\\n")

if __name__ == "__main__":
    BaseScheduler().schedule()
'''
CFG = f'''
_base_ = {str(TOY / "cfg.py")!r}
trainer = dict(name="StepRecordTrainer")
solver = dict(max_iter={STEPS}, checkpoint_period=0,
              generator=dict(lr_scheduler=dict(enabled=True, type="StepLR", params=dict(step_size={STEP_SIZE}, gamma={GAMMA}))))
'''


def run(tmp: Path, out: Path, nproc: int, *opts: str) -> str:
    (tmp / "train_rec.py").write_text(RECORD_TRAIN)
    (tmp / "cfg.py").write_text(CFG)
    launcher = "torchrun" if nproc > 1 else "python"
    cmd = launcher_cmd(launcher, tmp / "train_rec.py", nproc, free_port()) + [
        "--config-file", str(tmp / "cfg.py"), *[o for o in opts if o.startswith("--")],
        "--opts", "output_dir", str(out), "deepspeed.config", "zero2", *[o for o in opts if not o.startswith("--")]]
    result = run_cli(cmd, timeout=150)
    assert result.returncode == 0, result.stdout[-5000:]
    return result.stdout


def tag_hashes(tag_dir: Path) -> dict:
    """sha256 of every file the tag's manifest lists (the universal cache beside them is derived)."""
    files = layout.read_marker(str(tag_dir))["files"]
    return {rel: hashlib.sha256((tag_dir / rel).read_bytes()).hexdigest() for rel in files}


def steps(out: Path) -> list:
    return [json.loads(line) for line in (out / "steps_rank0.jsonl").read_text().splitlines()]


def scheduled_lr(step: int) -> float:
    """StepLR's value after ``step`` optimizer steps."""
    return LR * GAMMA ** (step // STEP_SIZE)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_resume_1_to_2_to_1_ranks(tmp_path):
    out = tmp_path / "run"
    root = out / "checkpoints"
    run(tmp_path, out, 1, "solver.stop_at_iter", "6")
    first_tag = root / layout.tag_name(6)
    before = tag_hashes(first_tag)

    log = run(tmp_path, out, 2, "--resume", "solver.stop_at_iter", "12")
    assert f"resumed from {first_tag} at step 6" in log
    assert "saved by 1 ranks, this run has 2" in log and "reseeded from (seed 3, rank 0, step 6)" in log
    assert "reseeded from (seed 3, rank 1, step 6)" in (out / "train.rank1.log").read_text()
    assert "global sample index 48 over 2 data-parallel ranks (was 1)" in log
    assert universal.is_ready(str(first_tag))
    assert tag_hashes(first_tag) == before  # the tag resumed from is only read
    assert layout.read_marker(str(root / layout.tag_name(12)))["world_size"] == 2

    log = run(tmp_path, out, 1, "--resume")
    assert f"resumed from {root / layout.tag_name(12)} at step 12" in log
    assert "saved by 2 ranks, this run has 1" in log

    records = steps(out)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))  # every step once, none repeated
    assert [r["ws"] for r in records] == [1] * 6 + [2] * 6 + [1] * 6
    for r in records:  # the schedule goes on across both resumes
        assert math.isclose(r["lr"], scheduled_lr(r["step"]), rel_tol=1e-6), r
    losses = [r["loss"] for r in records]
    mean = lambda a, b: sum(losses[a:b]) / (b - a)  # noqa: E731
    for cut in (6, 12):  # no reset: the loss after a resume is at the level before it, far below the start
        assert mean(cut, cut + 3) < 1.5 * mean(cut - 3, cut) and mean(cut, cut + 3) < 0.6 * losses[0], losses

    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    final = get_fp32_state_dict_from_zero_checkpoint(str(root / layout.tag_name(STEPS)), tag="generator")
    assert final and all(torch.isfinite(v).all() for v in final.values())
    assert layout.read_marker(str(root / layout.tag_name(STEPS)))["world_size"] == 1
