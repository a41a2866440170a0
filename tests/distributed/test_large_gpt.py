"""The GPT example trains on 2 ranks with tensor parallel and prints a sample (a short run)."""

import pytest

from engine.schedule.launch import free_port
from tests.helpers import REPO, launcher_cmd, run_cli

GPT = REPO / "examples" / "gpt"


@pytest.mark.slow
def test_gpt_example_tensor_parallel_trains_and_samples(tmp_path):
    cmd = launcher_cmd("torchrun", GPT / "train.py", 2, free_port()) + [
        "--config-file", str(GPT / "configs" / "tp.py"), "--opts", "output_dir", str(tmp_path),
        "solver.max_iter", "30", "solver.eval_period", "30", "trainer.log_period", "10",
        "dataloader.train_data_set.limit", "60000"]
    result = run_cli(cmd, timeout=150, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-4000:]
    losses = [float(line.split("loss ")[1].split()[0]) for line in result.stdout.splitlines() if " loss " in line and "step " in line]
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.5, losses
    assert "sample:\ndef " in result.stdout


@pytest.mark.slow
def test_a_hugging_face_network_plugs_in_under_zero3(tmp_path):
    pytest.importorskip("transformers", reason="the Hugging Face example network needs transformers (test extra)")
    cmd = launcher_cmd("torchrun", GPT / "train.py", 2, free_port()) + [
        "--config-file", str(GPT / "configs" / "hf_zero3.py"), "--opts", "output_dir", str(tmp_path),
        "solver.max_iter", "30", "solver.eval_period", "30", "trainer.log_period", "10",
        "dataloader.train_data_set.limit", "60000"]
    result = run_cli(cmd, timeout=180, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-4000:]
    assert "ZeRO stage 3" in result.stdout
    losses = [float(line.split("loss ")[1].split()[0]) for line in result.stdout.splitlines() if " loss " in line and "step " in line]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert "sample:\ndef " in result.stdout
