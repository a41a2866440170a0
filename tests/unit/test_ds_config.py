"""The framework config → DeepSpeed config derivation."""

import pytest

from engine.config import build_cfg
from engine.config.loader import merge
from engine.errors import ConfigError
from engine.runplan.ds_config import build_ds_config, resolve_template, uses_client_optimizer
from tests.unit.test_config import MINIMAL


def derive(override=None, world_size=1, device="cpu", opts=None):
    return build_ds_config(build_cfg(merge(MINIMAL, override or {}), opts), world_size=world_size, device=device)


@pytest.mark.parametrize("per_batch,accumulation,world,micro,steps,total", [
    (8, -1, 1, 8, 1, 8),
    (8, 1, 2, 8, 1, 16),
    (8, 4, 2, 2, 4, 16),
    (12, 3, 4, 4, 3, 48),
])
def test_batch_sizes(per_batch, accumulation, world, micro, steps, total):
    ds = derive({"solver": {"train_per_batch": per_batch, "gradient_accumulation_batch": accumulation}}, world)
    assert ds["train_micro_batch_size_per_gpu"] == micro
    assert ds["gradient_accumulation_steps"] == steps
    assert ds["train_batch_size"] == total


@pytest.mark.parametrize("template,stage", [("zero0", 0), ("zero1", 1), ("zero2", 2), ("zero3", 3),
                                            ("zero2_offload", 2), ("zero3_offload", 3), ("bf16", 2)])
def test_templates_resolve_by_name_and_set_the_stage(template, stage):
    ds = derive({"deepspeed": {"config": template}})
    assert ds["zero_optimization"]["stage"] == stage
    assert resolve_template(template) == resolve_template(f"ds_configs/{template}.json")


def test_user_overrides_merge_over_the_template():
    ds = derive({"deepspeed": {"config": "zero2", "zero_optimization": {"reduce_bucket_size": 123},
                               "bf16": {"enabled": True}}})
    assert ds["zero_optimization"]["stage"] == 2 and ds["zero_optimization"]["reduce_bucket_size"] == 123
    assert ds["zero_optimization"]["overlap_comm"] is True  # from the template
    assert ds["bf16"] == {"enabled": True}


def test_optimizer_mapping():
    adam = derive({"solver": {"generator": {"optimizer": {"type": "Adam", "params": {"lr": 0.1}}}}})
    assert adam["optimizer"]["type"] == "Adam"
    assert adam["optimizer"]["params"] == {"lr": 0.1, "adam_w_mode": False, "torch_adam": True}
    gpu = derive({"solver": {"generator": {"optimizer": {"type": "AdamW"}}}}, device="cuda")
    assert "torch_adam" not in gpu["optimizer"]["params"]
    sgd = derive({"solver": {"generator": {"optimizer": {"type": "SGD", "params": {"lr": 0.1}}}},
                  "deepspeed": {"config": "zero2"}})
    assert uses_client_optimizer(sgd) and sgd["zero_allow_untested_optimizer"] is True
    offload = derive({"solver": {"generator": {"optimizer": {"type": "SGD"}}}, "deepspeed": {"config": "zero2_offload"}})
    assert offload["zero_force_ds_cpu_optimizer"] is False


def test_clipping_by_norm_becomes_gradient_clipping():
    ds = derive({"solver": {"generator": {"clip_gradients": {"enabled": True, "clip_value": 2.5}}}})
    assert ds["gradient_clipping"] == 2.5
    by_value = derive({"solver": {"generator": {"clip_gradients": {"enabled": True, "clip_type": "value"}}}})
    assert by_value["gradient_clipping"] == 0.0  # explicitly off: DeepSpeed's own default would clip at 1.0
    assert derive()["gradient_clipping"] == 0.0


@pytest.mark.parametrize("override,message", [
    ({"deepspeed": {"train_micro_batch_size_per_gpu": 3}, "solver": {"train_per_batch": 8}},
     r"deepspeed\.train_micro_batch_size_per_gpu = 3 conflicts with solver\.train_per_batch"),
    ({"deepspeed": {"gradient_accumulation_steps": 2}, "solver": {"gradient_accumulation_batch": 1}},
     r"deepspeed\.gradient_accumulation_steps = 2 conflicts with solver\.gradient_accumulation_batch"),
    ({"deepspeed": {"gradient_clipping": 1.0}, "solver": {"generator": {"clip_gradients": {"enabled": True, "clip_value": 3.0}}}},
     r"deepspeed\.gradient_clipping = 1\.0 conflicts with solver\.generator\.clip_gradients\.clip_value"),
    ({"deepspeed": {"optimizer": {"type": "Adam"}}, "solver": {"generator": {"optimizer": {"type": "SGD"}}}},
     r"deepspeed\.optimizer = .* conflicts with solver\.generator\.optimizer = \{'type': 'SGD'"),
    ({"deepspeed": {"gradient_clipping": 1.0}, "solver": {"generator": {"clip_gradients": {"enabled": False}}}},
     r"deepspeed\.gradient_clipping = 1\.0 conflicts with solver\.generator\.clip_gradients \(enabled=False"),
    ({"deepspeed": {"scheduler": {"type": "WarmupLR"}}, "solver": {"generator": {"lr_scheduler": {"enabled": True, "type": "StepLR"}}}},
     r"deepspeed\.scheduler conflicts with solver\.generator\.lr_scheduler"),
    ({"deepspeed": {"fp16": {"enabled": True}}}, r"deepspeed\.fp16\.enabled = true, but this run's device \(cpu\)"),
    ({"deepspeed": {"fp16": {"enabled": True}, "bf16": {"enabled": True}}}, r"both true"),
    ({"deepspeed": {"config": "zero9"}}, r"deepspeed\.config: 'zero9' is neither a file nor a bundled template"),
    ({"deepspeed": {"config": "zero2", "pipeline": {"stages": 2}}}, r"ZeRO 0-1 only"),
])
def test_conflicts_name_both_places(override, message):
    with pytest.raises(ConfigError, match=message):
        derive(override, world_size=2)


def test_a_value_equal_in_both_places_is_accepted():
    ds = derive({"deepspeed": {"train_micro_batch_size_per_gpu": 8}})
    assert ds["train_micro_batch_size_per_gpu"] == 8
