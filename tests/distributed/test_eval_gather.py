"""Evaluation metrics gathered over 2 ranks equal the single-rank result on the same validation set."""

import sys

import pytest

from engine.launch import free_port
from tests.helpers import TOY, launcher_cmd, read_records, run_cli

# lr 0: both runs evaluate the same (initial) weights; 37 samples do not split evenly over 2 ranks
OPTS = ["solver.max_iter", "2", "solver.generator.optimizer.params.lr", "0.0",
        "dataloader.val_data_set", "{'name': 'ToyRegression', 'size': 37}", "solver.val_per_batch", "4",
        "trainer.tensorboard", "False"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_gathered_metrics_equal_single_rank(tmp_path, stage):
    runs = {}
    for world in (1, 2):
        out = tmp_path / f"ws{world}"
        cmd = (launcher_cmd("torchrun", TOY / "train.py", 2, free_port()) if world == 2
               else [sys.executable, str(TOY / "train.py")])
        result = run_cli(cmd + ["--config-file", str(TOY / "cfg.py"), "--opts", "output_dir", str(out),
                                "deepspeed.config", f"zero{stage}", *OPTS])
        assert result.returncode == 0, result.stdout[-4000:]
        runs[world] = read_records(out, world)
    single = runs[1][0]["metrics"]["val/loss"]
    for record in runs[2]:  # every rank holds the gathered value
        # float32 batch means summed in another grouping: equal to float32 precision
        assert record["metrics"]["val/loss"] == pytest.approx(single, rel=1e-6)
