"""A project arriving with its own DeepSpeed JSON (Hugging Face style, with "auto") trains as written."""

import json
import sys

import pytest
import yaml

from tests.helpers import TOY, run_cli

HF_STYLE = {
    "train_micro_batch_size_per_gpu": 2,
    "gradient_accumulation_steps": 2,
    "train_batch_size": "auto",
    "gradient_clipping": 1.0,
    "optimizer": {"type": "AdamW", "params": {"lr": 0.01, "betas": "auto", "weight_decay": 0.0}},
    "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto",
                                                      "warmup_num_steps": 2, "total_num_steps": "auto"}},
    "zero_optimization": {"stage": 2, "reduce_bucket_size": "auto"},
    "bf16": {"enabled": "auto"},
}


def _has_auto(value):
    if isinstance(value, dict):
        return any(_has_auto(v) for v in value.values())
    return value == "auto"


@pytest.mark.slow
def test_the_files_values_run_and_are_what_ds_config_json_shows(tmp_path):
    ds_json = tmp_path / "ds_config.json"
    ds_json.write_text(json.dumps(HF_STYLE))
    out = tmp_path / "out"
    config = tmp_path / "cfg.py"  # the toy project without a solver optimizer or batch size of its own
    config.write_text(
        "dataloader = dict(num_workers=0, train_data_set=dict(name='ToyRegression'))\n"
        "trainer = dict(name='ToyTrainer', log_period=3, model=dict(name='ToyModel', "
        "generator=dict(name='ToyMLP', dim=8, hidden=16)))\n"
        f"solver = dict(max_iter=6)\ndeepspeed = dict(config={str(ds_json)!r})\noutput_dir = {str(out)!r}\n")
    result = run_cli([sys.executable, str(TOY / "train.py"), "--config-file", str(config)], timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]

    ran = json.loads((out / "ds_config.json").read_text())
    assert (ran["train_micro_batch_size_per_gpu"], ran["gradient_accumulation_steps"], ran["train_batch_size"]) == (2, 2, 4)
    assert ran["gradient_clipping"] == 1.0
    assert ran["optimizer"]["type"] == "AdamW" and ran["optimizer"]["params"]["lr"] == 0.01
    assert ran["scheduler"]["params"] == {"warmup_min_lr": 0.0, "warmup_max_lr": 0.01, "warmup_num_steps": 2,
                                          "total_num_steps": 6}
    assert not _has_auto(ran)  # every "auto" was filled, or left to DeepSpeed's default

    solver = yaml.safe_load((out / "config.yaml").read_text())["solver"]  # the solver took the file's values
    assert (solver["train_per_batch"], solver["gradient_accumulation_batch"]) == (4, 2)
    assert solver["generator"]["clip_gradients"]["enabled"] and solver["generator"]["clip_gradients"]["clip_value"] == 1.0
    assert solver["generator"]["optimizer"] == {"type": "AdamW", "params": {"lr": 0.01, "weight_decay": 0.0}}
