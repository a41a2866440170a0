"""The run plan: one frozen object of every derived fact; the only caller of build_ds_config."""

import dataclasses
import re
from pathlib import Path

import pytest

from engine.config import build_cfg
from engine.config.loader import merge
from engine.errors import ConfigError, EngineError
from engine.runplan.plan import (DEEPSPEED_DEFAULTS, active_run_plan, build_run_plan, get_run_plan, use_run_plan,
                                  write_plan_files)
from tests.unit.test_config import MINIMAL

REPO = Path(__file__).resolve().parents[2]


def plan(override=None, *, world_size=1, rank=0, device="cpu", **kwargs):
    return build_run_plan(build_cfg(merge(MINIMAL, override or {})), rank=rank, world_size=world_size,
                          device=device, **kwargs)


def test_batch_arithmetic_layout_and_views():
    p = plan({"solver": {"train_per_batch": 12, "gradient_accumulation_batch": 3},
              "deepspeed": {"config": "zero3", "bf16": {"enabled": True}}}, world_size=4, rank=3)
    assert (p.batch.micro_batch, p.batch.accumulation, p.batch.global_batch) == (4, 3, 48)
    assert (p.layout.data_parallel_rank, p.layout.data_parallel_size) == (3, 4)
    assert p.zero_stage == 3 and p.precision == "bf16" and p.compute_dtype == "bfloat16"
    assert p.ds_config()["train_batch_size"] == 48 and p.torch_device == "cpu"
    assert p.batch.total_steps == p.batch.max_iter


def test_frozen_and_handing_out_copies():
    p = plan()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.zero_stage = 3
    p.ds_config()["zero_optimization"]["stage"] = 3
    assert p.ds_config()["zero_optimization"]["stage"] == p.zero_stage != 3
    with pytest.raises(EngineError, match="no engine 'discriminator.x'; it has generator"):
        p.ds_config("discriminator.x")


def test_every_discriminator_is_an_engine_with_its_own_solver():
    p = plan({"trainer": {"model": {"discriminator": [{"name": "a", "params": {"name": "D"}},
                                                      {"name": "b", "params": {"name": "D"}}]}},
              "solver": {"discriminator": [
                  {"name": "a", "params": {"optimizer": {"type": "SGD", "params": {"lr": 0.1}}}},
                  {"name": "b", "params": {"clip_gradients": {"enabled": True, "clip_value": 0.5}}}]}})
    assert p.engine_names == ["generator", "discriminator.a", "discriminator.b"]
    assert "optimizer" not in p.ds_config("discriminator.a")  # SGD: a client optimizer
    assert p.ds_config("discriminator.b")["gradient_clipping"] == 0.5
    assert p.ds_config()["gradient_clipping"] == 0.0  # the generator's own: off, written explicitly


def test_deepspeed_defaults_are_written_and_equal_deepspeeds_own():
    from deepspeed.runtime.precision_config import DeepSpeedBF16Config

    for key, value in DEEPSPEED_DEFAULTS["bf16"].items():
        assert DeepSpeedBF16Config.model_fields[key].default == value, key
    ds = plan({"deepspeed": {"bf16": {"enabled": True, "immediate_grad_update": True}}}).ds_config()
    assert ds["bf16"] == {"enabled": True, "check_grad_overflow": True, "immediate_grad_update": True}
    assert "bf16" not in plan().ds_config() and plan().ds_config()["zero_optimization"]["stage"] == 0


def test_tensor_parallel_fills_declared_specs_and_leaves_the_batch_size_to_deepspeed():
    specs = [{"patterns": [r".*\.up\.weight$"], "partition_type": "column"}]
    p = plan({"deepspeed": {"config": "zero1", "tensor_parallel": {"autotp_size": 2}}}, world_size=4, rank=3,
             layer_specs={"generator": specs})
    tp = p.ds_config()["tensor_parallel"]
    assert tp["partition_config"] == {"use_default_specs": False, "layer_specs": specs}
    assert "train_batch_size" not in p.ds_config() and p.batch.global_batch == 2 * p.batch.micro_batch
    assert (p.layout.tensor_parallel_size, p.layout.tensor_parallel_rank, p.layout.data_parallel_rank) == (2, 1, 1)


def test_epoch_arithmetic_and_the_unused_samples_note():
    p = plan({"trainer": {"enable_epoch_method": True}, "solver": {"train_per_batch": 8, "max_epoch": 3}},
             world_size=2)
    assert p.batch.total_steps is None
    done = p.with_dataset(100, 48)  # 50 per rank → 6 steps of 8
    assert (done.batch.steps_per_epoch, done.batch.total_steps, done.batch.unused_per_epoch) == (6, 18, 4)
    assert any("4 of 100 training samples are left unused each epoch" in n for n in done.notes)
    assert not plan().with_dataset(16, 16).notes


def test_a_config_no_run_could_honour_fails_at_plan_time():
    with pytest.raises(ConfigError, match="does not divide the world size 3"):
        plan({"deepspeed": {"config": "zero1", "pipeline": {"stages": 2}}}, world_size=3)
    with pytest.raises(ConfigError, match="solver.nan_policy = 'rollback' with a pipeline of 2 stages"):
        plan({"deepspeed": {"config": "zero1", "pipeline": {"stages": 2}}, "solver": {"nan_policy": "rollback"}},
             world_size=2)


def test_get_run_plan_is_the_active_plan_and_refuses_outside_a_run():
    assert active_run_plan() is None
    with pytest.raises(EngineError, match="no run plan is active"):
        get_run_plan()
    outer, inner = plan(), plan(world_size=2)
    with use_run_plan(outer):
        with use_run_plan(inner):
            assert get_run_plan() is inner
        assert get_run_plan() is outer
    assert active_run_plan() is None


def test_plan_files_one_ds_config_per_engine(tmp_path):
    import json

    p = plan({"trainer": {"model": {"discriminator": {"name": "D"}}}})
    written = write_plan_files(p, str(tmp_path))
    assert sorted(Path(w).name for w in written) == ["ds_config.discriminator.default.json", "ds_config.json", "plan.json"]
    assert json.loads((tmp_path / "ds_config.json").read_text()) == p.ds_config()
    assert json.loads((tmp_path / "plan.json").read_text())["engines"] == p.ds_configs


def test_build_ds_config_is_called_in_one_place():
    """Nothing re-derives a DeepSpeed config: only the run plan builds one."""
    callers = []
    sources = [p for folder in ("engine", "tools", "benchmarks", "examples") for p in (REPO / folder).rglob("*.py")]
    for path in sorted(sources):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bbuild_ds_config\(", line) and not line.lstrip().startswith("def "):
                callers.append(f"{path.relative_to(REPO)}:{number}")
    assert len(callers) == 1 and callers[0].startswith("engine/runplan/plan.py:"), callers


def test_seed_epoch_mode_counts_epochs_in_max_iter():
    """TrainFramework's epoch mode ran solver.max_iter epochs; such a config must not shrink to one epoch."""
    seed = plan({"trainer": {"enable_epoch_method": True}, "solver": {"max_iter": 7}})
    assert seed.batch.max_epoch == 7
    assert any("solver.max_iter 7 counts epochs" in note for note in seed.notes)
    both = plan({"trainer": {"enable_epoch_method": True}, "solver": {"max_iter": 7, "max_epoch": 3}})
    assert both.batch.max_epoch == 3 and not any("counts epochs" in note for note in both.notes)
    steps = plan({"solver": {"max_iter": 7}})  # iteration mode: max_iter is steps, as ever
    assert steps.batch.total_steps == 7 and not any("counts epochs" in note for note in steps.notes)
