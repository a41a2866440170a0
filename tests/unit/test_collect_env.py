"""The environment report: its rows, and ``python -m engine.collect_env`` as a user runs it."""

import sys

import torch

from engine.collect_env import collect_env, format_env
from tests.helpers import TOY, run_cli


def test_report_names_versions_devices_world_size_and_deepspeed_summary():
    ds = {"zero_optimization": {"stage": 2}, "bf16": {"enabled": True}, "train_micro_batch_size_per_gpu": 4,
          "gradient_accumulation_steps": 2, "train_batch_size": 16}
    rows = dict(collect_env(ds, world_size=2))
    assert rows["torch"] == torch.__version__ and rows["world size"] == "2"
    for key in ("python", "deepspeed", "cv2", "numpy", "CUDA (torch built with)", "CPU"):
        assert rows[key]
    assert "ZeRO stage 2, bf16, micro batch 4, accumulation 2, global batch 16" in rows["DeepSpeed config"]
    assert ("GPU 0" in rows) == torch.cuda.is_available()
    text = format_env(collect_env())
    assert "DeepSpeed config" not in text and text.splitlines()[0].startswith("python")


def test_module_prints_the_report_with_a_config_summary():
    result = run_cli([sys.executable, "-m", "engine.collect_env", "--config-file", str(TOY / "cfg.py"),
                      "--world-size", "2"], timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "deepspeed" in result.stdout and "world size" in result.stdout
    assert "ZeRO stage 2, fp32, micro batch 8, accumulation 1, global batch 16" in result.stdout
