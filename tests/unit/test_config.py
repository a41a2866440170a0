"""Config loading, _base_ merging, --opts, validation errors and the seed's alternative spellings."""

import textwrap

import pytest
import yaml

from engine.config import build_cfg, dump_cfg, get_cfg
from engine.config.loader import apply_opts, load_file, merge, parse_value
from engine.errors import ConfigError
from tests.helpers import DIGITS

MINIMAL = {
    "trainer": {"model": {"name": "M", "generator": {"name": "Net", "width": 4}}},
    "dataloader": {"train_data_set": {"name": "D", "transformer": []}},
}


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_python_and_yaml_digits_configs_resolve_identically():
    py = get_cfg(str(DIGITS / "configs" / "digits.py"))
    yml = get_cfg(str(DIGITS / "configs" / "digits.yaml"))
    assert py.to_dict() == yml.to_dict()
    assert py.SOLVER.MAX_ITER == 600 and py.TRAINER.MODEL.GENERATOR.NAME == "DigitsNet"
    affine = py.DATALOADER.TRAIN_DATA_SET.TRANSFORMER[0]
    assert affine["name"] == "RandomAffine" and list(affine["scaling_ratio_range"]) == [0.9, 1.1]


def test_base_list_is_merged_in_order_then_overridden(tmp_path):
    write(tmp_path / "a.py", "solver = dict(max_iter=10, train_per_batch=4)\nseed = 1\n")
    write(tmp_path / "b.yaml", "solver:\n  max_iter: 20\noutput_dir: /tmp/b\n")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "top.py", """
        import os  # modules and helpers in config files are ignored
        _base_ = ['../a.py', '../b.yaml']
        solver = dict(val_per_batch=3)
    """)
    data = load_file(str(tmp_path / "sub" / "top.py"))
    assert data["solver"] == {"max_iter": 20, "train_per_batch": 4, "val_per_batch": 3}
    assert data["seed"] == 1 and data["output_dir"] == "/tmp/b" and "os" not in data


def test_delete_replaces_instead_of_merging():
    merged = merge({"a": {"x": 1, "y": 2}}, {"a": {"_delete_": True, "z": 3}})
    assert merged == {"a": {"z": 3}}


def test_cyclic_and_missing_bases_are_reported(tmp_path):
    write(tmp_path / "a.py", "_base_ = 'b.py'\n")
    write(tmp_path / "b.py", "_base_ = 'a.py'\n")
    with pytest.raises(ConfigError, match="cyclic inheritance"):
        load_file(str(tmp_path / "a.py"))
    write(tmp_path / "c.py", "_base_ = 'missing.py'\n")
    with pytest.raises(ConfigError, match=r"missing\.py.*a _base_ of"):
        load_file(str(tmp_path / "c.py"))
    with pytest.raises(ConfigError, match="config file not found"):
        get_cfg(str(tmp_path / "nope.py"))


def test_opts_are_typed_dotted_and_case_insensitive():
    cfg = build_cfg(MINIMAL, ["SOLVER.MAX_ITER", "77", "solver.generator.optimizer.params.lr", "1e-3",
                              "trainer.model.generator.width", "[1, 2]", "trainer.enable_epoch_method", "true"])
    assert cfg.SOLVER.MAX_ITER == 77
    assert cfg.SOLVER.GENERATOR.OPTIMIZER.PARAMS.LR == pytest.approx(1e-3)
    assert cfg.TRAINER.MODEL.GENERATOR.WIDTH == [1, 2]
    assert cfg.TRAINER.ENABLE_EPOCH_METHOD is True
    assert parse_value("abc") == "abc" and parse_value("None") is None and parse_value("null") is None
    with pytest.raises(ConfigError, match="odd number"):
        apply_opts({}, ["solver.max_iter"])


@pytest.mark.parametrize("override,message", [
    ({"solver": {"max_itr": 3}}, r"solver\.max_itr: unknown key\. Did you mean 'max_iter'"),
    ({"trainer": {"model": {"ema": {"decay_rat": 0.9}}}}, r"solver\.ema\.decay_rat: unknown key.*'decay_rate'"),
    ({"solver": {"generator": {"optimzer": {}}}}, r"solver\.generator\.optimzer: unknown key.*'optimizer'"),
    ({"outptu_dir": "x"}, r"outptu_dir: unknown key.*'output_dir'"),
    ({"solver": {"max_iter": "ten"}}, r"solver\.max_iter: expected int, got 'ten' \(str\)"),
    ({"solver": {"max_iter": True}}, r"solver\.max_iter: expected int, got True"),
    ({"solver": {"max_iter": 0}}, r"solver\.max_iter: 0 is below the minimum 1"),
    ({"trainer": {"device": "tpu"}}, r"trainer\.device: 'tpu' is not one of"),
    ({"solver": {"generator": {"clip_gradients": {"clip_type": "vlue"}}}}, r"clip_type: 'vlue' is not one of"),
    ({"dataloader": {"train_data_set": {"_delete_": True, "transformer": []}}}, r"dataloader\.train_data_set\.name: required key"),
    ({"trainer": {"model": {"generator": [1]}}}, r"trainer\.model\.generator: expected a dict"),
    ({"deepspeed": {"load_universal_checkpoint": True}}, r"deepspeed\.load_universal_checkpoint: unknown key"),
    ({"solver": {"train_per_batch": 6, "gradient_accumulation_batch": 4}}, r"train_per_batch = 6 is not divisible"),
    ({"trainer": {"model": {"ema": {"enable": True}}}, "solver": {"ema": {"enabled": False}}},
     r"trainer\.model\.ema\.enabled = True conflicts with solver\.ema\.enabled = False"),
    ({"solver": {"nan_policy": "rolback"}}, r"solver\.nan_policy: 'rolback' is not one of \['stop', 'skip', 'rollback'\]"),
    ({"solver": {"max_rollbacks": -1}}, r"solver\.max_rollbacks: -1 is below the minimum 0"),
    ({"dataloader": {"skip_samples": 7}}, r"dataloader\.skip_samples: expected list, got 7"),
    ({"dataloader": {"skip_samples": [3, "12"]}}, r"dataloader\.skip_samples\[1\] = '12': expected a training-set index"),
    ({"dataloader": {"skip_samples": [True]}}, r"dataloader\.skip_samples\[0\] = True: expected a training-set index"),
])
def test_validation_errors_name_the_key_path(override, message):
    with pytest.raises(ConfigError, match=message):
        build_cfg(merge(MINIMAL, override))


def test_user_owned_sections_pass_through_unchanged():
    cfg = build_cfg(merge(MINIMAL, {"trainer": {"model": {"generator": {"MixedCase": 1, "nested": {"k": [1]}}}}}))
    assert cfg.TRAINER.MODEL.GENERATOR.to_dict() == {"name": "Net", "width": 4, "MixedCase": 1, "nested": {"k": [1]}}


def test_seed_spellings_are_folded_and_mirrored():
    cfg = build_cfg(merge(MINIMAL, {
        "trainer": {"loss": {"l1": [{"name": "L1Loss"}]}, "model": {"ema": {"enable": False, "decay_rate": 0.9}}},
        "solver": {"generator": {"optimizer": {"type": "Adam", "clip_gradients": {"enabled": True}}}},
    }))
    assert cfg.SOLVER.EMA.ENABLED is False and cfg.SOLVER.EMA.DECAY_RATE == 0.9
    assert cfg.TRAINER.MODEL.EMA.ENABLE is False and cfg.TRAINER.MODEL.EMA.DECAY_RATE == 0.9
    assert cfg.TRAINER.MODEL.LOSS == cfg.TRAINER.LOSS == {"l1": [{"name": "L1Loss"}]}
    assert cfg.SOLVER.GENERATOR.CLIP_GRADIENTS.ENABLED is True
    assert "clip_gradients" not in cfg.SOLVER.GENERATOR.OPTIMIZER


def test_config_is_frozen_and_dumps_to_yaml(tmp_path):
    cfg = build_cfg(MINIMAL)
    with pytest.raises(AttributeError, match="frozen"):
        cfg.SOLVER.MAX_ITER = 3
    dump_cfg(cfg, str(tmp_path / "config.yaml"))
    again = build_cfg(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert again.to_dict() == cfg.to_dict()


def test_broken_config_files_give_one_clear_error(tmp_path):
    write(tmp_path / "bad.py", "solver = dict(max_iter=1/0)\n")
    with pytest.raises(ConfigError, match="ZeroDivisionError"):
        get_cfg(str(tmp_path / "bad.py"))
    write(tmp_path / "bad.yaml", "solver: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        get_cfg(str(tmp_path / "bad.yaml"))
    write(tmp_path / "bad.toml", "x = 1\n")
    with pytest.raises(ConfigError, match="unsupported config file type"):
        get_cfg(str(tmp_path / "bad.toml"))


def test_delete_markers_never_reach_the_resolved_config(tmp_path):
    write(tmp_path / "solo.py", "trainer = dict(model=dict(generator=dict(_delete_=True, name='Net')))\n")
    assert load_file(str(tmp_path / "solo.py")) == {"trainer": {"model": {"generator": {"name": "Net"}}}}
