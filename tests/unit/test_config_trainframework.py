"""Seed-era configs load unchanged: helper variables in .py files, open sections, typed _base_ merging.

The errors that catch real mistakes stay: a misspelled section holding a dict, a misspelled
framework key in an open section, and ``solver`` stays closed.
"""

import textwrap

import pytest

from engine.config import build_cfg, get_cfg, user_key_paths
from engine.config.loader import load_file, merge
from engine.errors import ConfigError
from engine.utils.suggest import typo_of

MINIMAL = {
    "trainer": {"model": {"name": "M", "generator": {"name": "Net"}}},
    "dataloader": {"train_data_set": {"name": "D"}},
}

SEED_STYLE = """
    import os
    from functools import partial

    DATA = os.environ.get("ENGINE_TEST_DATA_ROOT", "/data/seg")
    img_size = 608
    t_transformer = [dict(name="Resize", target_size=img_size, keep_ratio=False)]
    _private = 1


    def data_path(name):
        return os.path.join(DATA, name)


    class Helper:
        pass


    helper = Helper()
    join = partial(os.path.join, DATA)
    solvr = 3  # close to 'solver', but not a dict: a variable of the user's own
    trainr_size = dict(a=1)  # a dict whose name is far from any section

    trainer = dict(model=dict(name="M", generator=dict(name="Net", in_size=img_size)))
    dataloader = dict(train_data_set=dict(name="D", root=data_path("train"), transformer=t_transformer))
    SOLVER = dict(max_iter=7)
"""


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_python_config_keeps_the_sections_and_ignores_the_users_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_TEST_DATA_ROOT", "/mnt/x")
    data = load_file(str(write(tmp_path / "seg.py", SEED_STYLE)))
    assert sorted(data) == ["SOLVER", "dataloader", "trainer"]
    cfg = get_cfg(str(tmp_path / "seg.py"))
    assert cfg.DATALOADER.TRAIN_DATA_SET.ROOT == "/mnt/x/train"
    assert cfg.DATALOADER.TRAIN_DATA_SET.TRANSFORMER[0]["target_size"] == 608
    assert cfg.TRAINER.MODEL.GENERATOR.IN_SIZE == 608 and cfg.SOLVER.MAX_ITER == 7


@pytest.mark.parametrize("text, message", [
    ("solvr = dict(max_iter=3)", r"solvr: not a config key\. Did you mean 'solver'\?"),
    ("dataloder = dict(num_workers=2)", r"dataloder: .*Did you mean 'dataloader'\?"),
    ("Trainr = dict(name='T')", r"Trainr: .*Did you mean 'trainer'\?"),
    ("ouput_dir = '/tmp/x'", r"ouput_dir: .*Did you mean 'output_dir'\?"),
    ("_bases_ = ['a.py']", r"_bases_: .*Did you mean '_base_'\?"),
    ("base_ = 'a.py'", r"base_: .*Did you mean '_base_'\?"),
])
def test_misspelled_section_in_a_python_config_is_still_an_error(tmp_path, text, message):
    path = write(tmp_path / "c.py", "trainer = dict(model=dict(name='M', generator=dict(name='N')))\n" + text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_file(str(path))


def test_yaml_top_level_stays_strict(tmp_path):
    """YAML has no helper variables: every top-level key is meant as config."""
    write(tmp_path / "c.yaml", "img_size: 608\n")
    with pytest.raises(ConfigError, match=r"img_size: unknown key"):
        get_cfg(str(tmp_path / "c.yaml"))


def test_trainer_and_dataloader_keep_keys_of_the_users_own():
    cfg = build_cfg(merge(MINIMAL, {
        "trainer": {"my_key": 5, "model_path": "/w.pth", "model": {"num_classes": 3}},
        "dataloader": {"Crop_Size": [512, 512], "my_root": "/d"},
    }))
    assert cfg.TRAINER.MY_KEY == 5 and cfg.TRAINER.MODEL_PATH == "/w.pth"
    assert cfg.TRAINER.MODEL.NUM_CLASSES == 3
    assert list(cfg.DATALOADER.CROP_SIZE) == [512, 512] and "Crop_Size" in cfg.DATALOADER  # kept as written
    assert sorted(user_key_paths(cfg)) == ["dataloader.Crop_Size", "dataloader.my_root", "trainer.model.num_classes",
                                      "trainer.model_path", "trainer.my_key"]
    assert user_key_paths(build_cfg(MINIMAL)) == []


@pytest.mark.parametrize("override, message", [
    ({"trainer": {"enable_epoch_metod": True}},
     r"trainer\.enable_epoch_metod: unknown key\. Did you mean 'enable_epoch_method'\? This section accepts keys of "
     r"your own, but this one is a likely misspelling"),
    ({"trainer": {"weight": "/w.pth"}}, r"trainer\.weight: unknown key\. Did you mean 'weights'"),
    ({"dataloader": {"num_worker": 2}}, r"dataloader\.num_worker: unknown key\. Did you mean 'num_workers'"),
    ({"trainer": {"model": {"generater": {"name": "N"}}}}, r"trainer\.model\.generater: .*'generator'"),
    ({"solver": {"my_key": 1}}, r"solver\.my_key: unknown key\."),  # solver is closed, as in the seed
])
def test_misspelled_keys_in_open_sections_are_still_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        build_cfg(merge(MINIMAL, override))


def test_typo_detection_is_strict_enough_for_names_of_the_users_own():
    sections = ["trainer", "solver", "dataloader", "deepspeed", "output_dir", "seed"]
    assert typo_of("solvr", sections) == "solver"
    assert typo_of("dataloder", sections) == "dataloader"
    assert typo_of("deepsepd", sections) == "deepspeed"  # neighbours swapped: one edit
    for own in ("train", "img_size", "t_transformer", "DATA", "Solver", "test_size"):
        assert typo_of(own, sections) is None, own
    assert typo_of("model_path", ["model"]) is None and typo_of("my_weights", ["weights"]) is None


def test_the_seeds_none_defaults_read_as_engines_values():
    cfg = build_cfg(merge(MINIMAL, {"trainer": {"weights": None, "model": {"ema": {"enable": True, "num_updates": None}}}}))
    assert cfg.TRAINER.WEIGHTS == "" and cfg.SOLVER.EMA.NUM_UPDATES == -1 and cfg.SOLVER.EMA.ENABLED is True


# ---- _base_: a changed optimizer / scheduler type replaces the base's params ----------------------

SGD = {"type": "SGD", "params": {"lr": 0.1, "momentum": 0.9, "nesterov": True}}
STEP = {"enabled": True, "type": "LRMultiplierScheduler",
        "params": {"lr_scheduler_param": {"name": "WarmupMultiStepLR", "steps": [5]}, "max_iter": 10}}


def _solver(**generator):
    return {"solver": {"generator": generator}}


def test_changed_optimizer_type_replaces_the_base_params():
    merged = merge(_solver(optimizer=SGD), _solver(optimizer={"type": "AdamW", "params": {"lr": 1e-3}}))
    assert merged["solver"]["generator"]["optimizer"] == {"type": "AdamW", "params": {"lr": 1e-3}}
    without_params = merge(_solver(optimizer=SGD), _solver(optimizer={"type": "Adam"}))
    assert without_params["solver"]["generator"]["optimizer"] == {"type": "Adam"}  # constructor defaults apply


def test_same_or_unnamed_type_still_merges():
    same = merge(_solver(optimizer=SGD), _solver(optimizer={"type": "sgd", "params": {"lr": 0.5}}))
    assert same["solver"]["generator"]["optimizer"]["params"] == {"lr": 0.5, "momentum": 0.9, "nesterov": True}
    unnamed = merge(_solver(optimizer=SGD), _solver(optimizer={"params": {"lr": 0.5}}))
    assert unnamed["solver"]["generator"]["optimizer"] == {"type": "SGD", "params": {"lr": 0.5, "momentum": 0.9,
                                                                                      "nesterov": True}}


def test_changed_scheduler_type_replaces_params_but_keeps_the_other_keys():
    child = {"type": "CosineAnnealingLR", "params": {"T_max": 10}}
    merged = merge(_solver(lr_scheduler=STEP), _solver(lr_scheduler=child))["solver"]["generator"]["lr_scheduler"]
    assert merged == {"enabled": True, "type": "CosineAnnealingLR", "params": {"T_max": 10}}


def test_type_change_applies_in_discriminator_solvers_and_through_base_files(tmp_path):
    write(tmp_path / "base.py", f"""
        solver = dict(generator=dict(optimizer={SGD!r}), discriminator=dict(optimizer={SGD!r}))
        trainer = dict(model=dict(name="M", generator=dict(name="N"), discriminator=dict(name="D")))
        dataloader = dict(train_data_set=dict(name="D"))
    """)
    write(tmp_path / "child.py", """
        _base_ = "base.py"
        solver = dict(generator=dict(optimizer=dict(type="AdamW", params=dict(lr=2e-4, betas=(0.5, 0.99)))),
                      discriminator=dict(optimizer=dict(type="Adam", params=dict(lr=1e-4))))
    """)
    cfg = get_cfg(str(tmp_path / "child.py"))
    assert cfg.SOLVER.GENERATOR.OPTIMIZER.to_dict() == {"type": "AdamW", "params": {"lr": 2e-4, "betas": [0.5, 0.99]}}
    assert cfg.SOLVER.DISCRIMINATOR.OPTIMIZER.to_dict() == {"type": "Adam", "params": {"lr": 1e-4}}
