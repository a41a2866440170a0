"""An existing DeepSpeed JSON in ``deepspeed.config``: its values are taken, ``auto`` filled, conflicts named."""

import json

import pytest

from engine.config import build_cfg
from engine.config.loader import merge
from engine.errors import ConfigError
from engine.runplan.ds_config import build_ds_config
from engine.runplan.ds_file import welcome_ds_file
from tests.unit.test_config import MINIMAL

# what people arrive with: a DeepSpeed config written for another trainer
HF_STYLE = {
    "train_micro_batch_size_per_gpu": 4,
    "gradient_accumulation_steps": 2,
    "train_batch_size": "auto",
    "gradient_clipping": 0.5,
    "optimizer": {"type": "AdamW", "params": {"lr": 3e-4, "weight_decay": 0.01, "betas": "auto"}},
    "scheduler": {"type": "WarmupDecayLR",
                  "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto", "warmup_num_steps": 10,
                             "total_num_steps": "auto"}},
    "zero_optimization": {"stage": 2, "reduce_bucket_size": "auto"},
    "bf16": {"enabled": "auto"},
}


@pytest.fixture
def ds_json(tmp_path):
    def write(data=None):
        path = tmp_path / "ds_config.json"
        path.write_text(json.dumps(HF_STYLE if data is None else data))
        return str(path)
    return write


def cfg_with(path, override=None):
    return build_cfg(merge(merge(MINIMAL, {"deepspeed": {"config": path}, "solver": {"max_iter": 30}}), override or {}))


def test_the_files_values_are_taken_where_the_user_wrote_none(ds_json):
    cfg = cfg_with(ds_json())
    taken = welcome_ds_file(cfg)
    assert taken.SOLVER.TRAIN_PER_BATCH == 8 and taken.SOLVER.GRADIENT_ACCUMULATION_BATCH == 2
    assert taken.SOLVER.GENERATOR.CLIP_GRADIENTS.ENABLED and taken.SOLVER.GENERATOR.CLIP_GRADIENTS.CLIP_VALUE == 0.5
    assert taken.SOLVER.GENERATOR.OPTIMIZER.to_dict() == {"type": "AdamW", "params": {"lr": 3e-4, "weight_decay": 0.01}}
    assert welcome_ds_file(taken) is taken  # nothing left to take
    assert not taken.is_written("solver.train_per_batch")  # still not the user's: shown as coming from the file

    ds = build_ds_config(cfg, world_size=2, device="cpu")
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]) == (4, 2, 16)
    assert ds["gradient_clipping"] == 0.5
    assert ds["optimizer"] == {"type": "AdamW", "params": {"lr": 3e-4, "weight_decay": 0.01, "torch_adam": True}}
    # "auto" filled from the solver where it has the value, else left to DeepSpeed's default
    assert ds["scheduler"]["params"] == {"warmup_min_lr": 0.0, "warmup_max_lr": 3e-4, "warmup_num_steps": 10,
                                         "total_num_steps": 30}
    assert ds["zero_optimization"] == {"stage": 2} and ds["bf16"] == {}


def test_deepspeeds_adam_keeps_its_meaning_when_taken(ds_json):
    cfg = cfg_with(ds_json({"optimizer": {"type": "Adam", "params": {"lr": 0.1}}}))
    ds = build_ds_config(cfg, world_size=1, device="cpu")
    assert ds["optimizer"]["params"]["adam_w_mode"] is True  # DeepSpeed's Adam is AdamW unless told otherwise


def test_written_values_that_agree_are_accepted(ds_json):
    cfg = cfg_with(ds_json(), {"solver": {"train_per_batch": 8, "gradient_accumulation_batch": 2, "generator": {
        "optimizer": {"type": "adamw", "params": {"lr": 3e-4, "weight_decay": 0.01}}}}})
    assert build_ds_config(cfg, world_size=1, device="cpu")["optimizer"]["params"]["lr"] == 3e-4


@pytest.mark.parametrize("override,message", [
    ({"solver": {"generator": {"optimizer": {"type": "SGD", "params": {"lr": 0.1}}}}},
     r"deepspeed\.optimizer \(from .*ds_config\.json, the deepspeed\.config file\) = .* conflicts with "
     r"solver\.generator\.optimizer = \{'type': 'SGD'"),
    ({"solver": {"train_per_batch": 6}},
     r"deepspeed\.train_micro_batch_size_per_gpu \(from .*ds_config\.json.*\) = 4 conflicts with solver\.train_per_batch"),
    ({"solver": {"train_per_batch": 9}}, r"solver\.train_per_batch = 9 is not divisible by deepspeed\.gradient_accumulation_steps \(from"),
    ({"solver": {"generator": {"clip_gradients": {"enabled": True, "clip_value": 2.0}}}},
     r"deepspeed\.gradient_clipping \(from .*\) = 0\.5 conflicts with solver\.generator\.clip_gradients\.clip_value = 2\.0"),
])
def test_two_written_values_that_disagree_name_both_places(ds_json, override, message):
    with pytest.raises(ConfigError, match=message):
        build_ds_config(cfg_with(ds_json(), override), world_size=1, device="cpu")


def test_a_file_train_batch_size_that_no_solver_value_matches_is_named(ds_json):
    cfg = cfg_with(ds_json({"train_micro_batch_size_per_gpu": 4, "train_batch_size": 12}))
    with pytest.raises(ConfigError, match=r"deepspeed\.train_batch_size \(from .*\) = 12 conflicts with"):
        build_ds_config(cfg, world_size=2, device="cpu")


def test_discriminators_take_their_own_solver_not_the_files_optimizer(ds_json):
    cfg = cfg_with(ds_json(), {"trainer": {"model": {"discriminator": {"name": "D"}}},
                               "solver": {"discriminator": {"optimizer": {"type": "SGD", "params": {"lr": 0.2}}}}})
    ds = build_ds_config(cfg, world_size=1, device="cpu", solver=cfg.SOLVER.DISCRIMINATOR, where="solver.discriminator")
    assert "optimizer" not in ds and "scheduler" not in ds and ds["gradient_clipping"] == 0.0
    assert ds["train_micro_batch_size_per_gpu"] == 4  # the batch is the run's, shared by every engine


def test_what_the_user_wrote_survives_pickling_to_spawned_workers(ds_json):
    import pickle

    cfg = cfg_with(ds_json(), {"trainer": {"loss": {"cls": [{"name": "L1Loss"}]}}})
    assert cfg.is_written("solver.max_iter") and not cfg.is_written("solver.train_per_batch")
    assert cfg.is_written("trainer.loss")  # the seed's spelling, folded into trainer.model.loss, still counts
    copy = pickle.loads(pickle.dumps(cfg))
    assert copy.is_written("solver.max_iter") and not copy.is_written("solver.train_per_batch") and copy.is_frozen()
