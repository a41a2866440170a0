"""Each engine's DeepSpeed dict against DeepSpeed's own config classes, and the constructors DeepSpeed will call."""

import sys
from pathlib import Path

import pytest

from engine.config import build_cfg, get_cfg
from engine.config.loader import merge
from engine.errors import ConfigError
from engine.runplan.ds_config import build_ds_config
from engine.runplan.ds_constructors import check_deepspeed_optimizer, deepspeed_optimizer_class
from engine.runplan.ds_file import deepspeed_side, template_dirs
from engine.runplan.ds_schema import check_ds_config
from engine.schedule.preflight import preflight
from tests.helpers import DIGITS, REPO
from tests.unit.test_config import MINIMAL

GAN = REPO / "examples" / "gan_digits"


def cfg_with(override=None):
    return build_cfg(merge(MINIMAL, override or {}))


def checked(override=None, world_size=2, device="cpu"):
    cfg = cfg_with(override)
    ds = build_ds_config(cfg, world_size=world_size, device=device)
    check_ds_config(ds, deepspeed_side(cfg)[1])
    return ds


def bundled_templates():
    return sorted({p.stem for folder in template_dirs() for p in Path(folder).glob("*.json")})


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("template", bundled_templates())
def test_every_bundled_template_passes_deepspeeds_schema(template, device):
    checked({"deepspeed": {"config": template}}, device=device)


def test_unknown_keys_at_depth_name_the_closest_valid_ones():
    with pytest.raises(ConfigError) as info:
        checked({"deepspeed": {"config": "zero3_offload", "zero_optimization": {"offload_param": {"pin_memroy": True}}}})
    message = str(info.value)
    assert message.startswith("deepspeed.zero_optimization.offload_param.pin_memroy: unknown key. Did you mean 'pin_memory'")
    assert "Valid keys here:" in message and "device" in message


def test_every_problem_gets_its_own_line():
    with pytest.raises(ConfigError) as info:
        checked({"deepspeed": {"pipeline": {"stagse": 1}, "activation_checkpointing": {"profil": True}}})
    lines = str(info.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["deepspeed.pipeline.stagse", "deepspeed.activation_checkpointing.profil"]


def test_the_batch_arithmetic_is_left_to_engine_for_the_real_world_size():
    ds = checked({"solver": {"train_per_batch": 4}}, world_size=8)  # DeepSpeed alone would see world size 1
    assert ds["train_batch_size"] == 32


@pytest.mark.parametrize("device,template,optimizer,expected", [
    ("cpu", "zero0", {"type": "AdamW"}, "torch.optim.adamw.AdamW"),
    ("cpu", "zero0", {"type": "Adam"}, "torch.optim.adam.Adam"),  # engine's Adam: adam_w_mode false
    ("cuda", "zero0", {"type": "AdamW"}, "deepspeed.ops.adam.fused_adam.FusedAdam"),
    ("cuda", "zero2_offload", {"type": "AdamW"}, "deepspeed.ops.adam.cpu_adam.DeepSpeedCPUAdam"),
    ("cuda", "zero0", {"type": "Lion"}, "deepspeed.ops.lion.fused_lion.FusedLion"),
    ("cuda", "zero2_offload", {"type": "Lion"}, "deepspeed.ops.lion.cpu_lion.DeepSpeedCPULion"),
    ("cpu", "zero0", {"type": "Adagrad"}, "torch.optim.adagrad.Adagrad"),
    ("cuda", "zero0", {"type": "Lamb"}, "deepspeed.ops.lamb.fused_lamb.FusedLamb"),
])
def test_the_class_is_the_one_deepspeed_builds_on_this_device(device, template, optimizer, expected):
    ds = build_ds_config(cfg_with({"deepspeed": {"config": template}, "solver": {"generator": {"optimizer": optimizer}}}),
                         world_size=1, device=device)
    cls, params, added = deepspeed_optimizer_class(ds)
    assert f"{cls.__module__}.{cls.__name__}" == expected
    assert not {"torch_adam", "adam_w_mode"} & set(params)  # DeepSpeed pops these before the call


def test_fused_adams_own_signature_decides_on_gpu():
    cfg = cfg_with({"solver": {"generator": {"optimizer": {"type": "AdamW", "params": {"lr": 0.1, "set_grad_none": True}}}}})
    check_deepspeed_optimizer(build_ds_config(cfg, world_size=1, device="cuda"), "solver.generator.optimizer")  # FusedAdam takes it
    with pytest.raises(ConfigError, match=r"solver\.generator\.optimizer\.params: unexpected parameter 'set_grad_none'.*AdamW"):
        check_deepspeed_optimizer(build_ds_config(cfg, world_size=1, device="cpu"), "solver.generator.optimizer")  # torch's does not


def test_a_discriminators_deepspeed_optimizer_is_checked_at_its_own_path():
    sys.path[:0] = [str(GAN), str(DIGITS)]
    import codes.dataset  # noqa: F401  (registers DigitsDataset, which the GAN example reuses)
    import gan_codes  # noqa: F401  (registers the GAN example's classes)

    good = get_cfg(str(GAN / "configs" / "gan_digits.py"))
    preflight(good, world_size=2, device="cpu")
    bad = get_cfg(str(GAN / "configs" / "gan_digits.py"), ["solver.discriminator.optimizer.params.momentum", "0.9"])
    with pytest.raises(ConfigError, match=r"^solver\.discriminator\.optimizer\.params: unexpected parameter 'momentum'"):
        preflight(bad, world_size=2, device="cpu")
