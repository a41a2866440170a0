"""engine's copy of DeepSpeed's optimizer types, and the ds_config optimizer section."""

from __future__ import annotations

import pytest

from engine.errors import ConfigError
from engine.solver import DEEPSPEED_OPTIMIZER_TYPES, deepspeed_optimizer_config, deepspeed_optimizer_name

WHERE = "solver.generator.optimizer"


def test_table_matches_installed_deepspeed():
    # Drift guard: engine copies the list so it does not import DeepSpeed at import time.
    from deepspeed.runtime import config as ds_config

    assert set(DEEPSPEED_OPTIMIZER_TYPES) == set(ds_config.DEEPSPEED_OPTIMIZERS)
    for lower, spelling in DEEPSPEED_OPTIMIZER_TYPES.items():
        assert spelling.lower() == lower


@pytest.mark.parametrize("name, expected", [
    ("Adam", "Adam"), ("adam", "Adam"), ("ADAMW", "AdamW"), ("AdamW", "AdamW"), ("lamb", "Lamb"),
    ("Lion", "Lion"), ("Adagrad", "Adagrad"), ("SGD", None), ("RMSprop", None), ("", None), (None, None),
])
def test_deepspeed_optimizer_name(name, expected):
    assert deepspeed_optimizer_name(name) == expected


def test_adam_keeps_torch_semantics():
    section = deepspeed_optimizer_config(dict(type="adam", params=dict(lr=0.01, weight_decay=1e-6)), where=WHERE)
    assert section == {"type": "Adam", "params": {"lr": 0.01, "weight_decay": 1e-6, "adam_w_mode": False}}


def test_explicit_adam_w_mode_and_torch_impl():
    section = deepspeed_optimizer_config(dict(type="Adam", params=dict(lr=0.01, adam_w_mode=True)),
                                         where=WHERE, torch_impl=True)
    assert section["params"] == {"lr": 0.01, "adam_w_mode": True, "torch_adam": True}
    section = deepspeed_optimizer_config(dict(type="AdamW", params=dict(lr=0.01, betas=(0.9, 0.95))),
                                         where=WHERE, torch_impl=True)
    assert section == {"type": "AdamW", "params": {"lr": 0.01, "betas": [0.9, 0.95], "torch_adam": True}}
    section = deepspeed_optimizer_config(dict(type="Lamb", params=dict(lr=0.01)), where=WHERE, torch_impl=True)
    assert section == {"type": "Lamb", "params": {"lr": 0.01}}


@pytest.mark.parametrize("spec, match", [
    (dict(type="SGD", params={}), r"\.type: 'SGD' is not an optimizer DeepSpeed builds"),
    (dict(type="AdamW", params=dict(max_grad_norm=1.0)), r"\.params\.max_grad_norm: .*clip_gradients"),
])
def test_config_errors(spec, match):
    with pytest.raises(ConfigError, match=rf"^{WHERE}{match}"):
        deepspeed_optimizer_config(spec, where=WHERE)


def test_mup_types_need_mup():
    import importlib.util

    if importlib.util.find_spec("mup") is not None:
        pytest.skip("mup is installed here")
    with pytest.raises(ConfigError, match=r"\.type: DeepSpeed's MuAdam needs the 'mup' package"):
        deepspeed_optimizer_config(dict(type="MuAdam", params={}), where=WHERE)
