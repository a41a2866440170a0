"""GAN config: discriminator names, matching solver entries, defaults filled, clear errors."""

import pytest

from engine.config import build_cfg
from engine.config.checks import discriminator_plan
from engine.config.loader import merge
from engine.errors import ConfigError
from engine.runplan.ds_config import build_ds_config

MINIMAL = {"trainer": {"model": {"name": "M", "generator": {"name": "G"}}},
           "dataloader": {"train_data_set": {"name": "D"}}}


def gan(model_d, solver_d=None):
    data = merge(MINIMAL, {"trainer": {"model": {"discriminator": model_d}}})
    if solver_d is not None:
        data = merge(data, {"solver": {"discriminator": solver_d}})
    return build_cfg(data)


def test_one_dict_is_named_default_and_gets_solver_defaults():
    cfg = gan({"name": "PatchD", "ch": 8})
    [(name, network, solver, where)] = discriminator_plan(cfg)
    assert (name, network["name"], where) == ("default", "PatchD", "solver.discriminator")
    assert solver["optimizer"]["type"] == "AdamW" and solver["clip_gradients"]["enabled"] is False


def test_list_form_matches_solver_entries_by_name_in_any_order():
    cfg = gan([{"name": "a", "params": {"name": "D1"}}, {"name": "b", "params": {"name": "D2"}}],
              [{"name": "b", "params": {"optimizer": {"type": "SGD", "params": {"lr": 0.1},
                                                      "clip_gradients": {"enabled": True, "clip_value": 2.0}}}},
               {"name": "a", "params": {"optimizer": {"type": "Adam"}}}])
    plan = {name: (network, solver, where) for name, network, solver, where in discriminator_plan(cfg)}
    assert plan["a"][0]["name"] == "D1" and plan["a"][1]["optimizer"]["type"] == "Adam"
    assert plan["b"][1]["clip_gradients"]["clip_value"] == 2.0  # seed's nested clip_gradients folded
    assert plan["b"][2] == "solver.discriminator[0].params"
    ds = build_ds_config(cfg, world_size=2, device="cpu", solver=plan["b"][1], where=plan["b"][2])
    assert ds["gradient_clipping"] == 2.0 and "optimizer" not in ds  # SGD: a client torch optimizer
    assert build_ds_config(cfg, world_size=2, device="cpu")["gradient_clipping"] == 0.0  # the generator's own: off


def test_one_solver_dict_serves_every_discriminator():
    cfg = gan([{"name": "a", "params": {"name": "D1"}}, {"name": "b", "params": {"name": "D2"}}],
              {"optimizer": {"type": "SGD", "params": {"lr": 0.1}}})
    assert [s["optimizer"]["type"] for _, _, s, _ in discriminator_plan(cfg)] == ["SGD", "SGD"]


@pytest.mark.parametrize("model_d,solver_d,message", [
    ([{"name": "a", "params": {"name": "D"}}, {"name": "a", "params": {"name": "D"}}], None,
     r"trainer\.model\.discriminator\[1\]\.name = 'a' repeats trainer\.model\.discriminator\[0\]\.name"),
    ([{"name": "a", "params": {"name": "D"}}], [{"name": "x", "params": {}}],
     r"solver\.discriminator\[0\]\.name = 'x' matches no discriminator .*names: a"),
    ([{"name": "a", "params": {"name": "D"}}, {"name": "b", "params": {"name": "D"}}], [{"name": "a", "params": {}}],
     r"solver\.discriminator has no entry for discriminator\(s\) 'b'"),
    ([{"name": "a", "params": {"name": "D"}}], [{"name": "a", "params": {}}, {"name": "a", "params": {}}],
     r"solver\.discriminator\[1\]\.name = 'a' repeats"),
    ([{"name": "a", "params": {"ch": 3}}], None, r"trainer\.model\.discriminator\[0\]\.params .*BUILD_NETWORK_REGISTRY"),
    ({"name": "D"}, {"optimizer": {"typo": 1}}, r"solver\.discriminator\.optimizer\.typo: unknown key"),
    ({"name": "D"}, {"clip_gradients": {"enabled": True, "norm_type": 1.0}},
     r"solver\.discriminator\.clip_gradients\.norm_type = 1\.0"),
    (None, {"optimizer": {"type": "SGD"}}, r"solver\.discriminator is set but trainer\.model\.discriminator is not"),
])
def test_bad_discriminator_configs_name_their_keys(model_d, solver_d, message):
    with pytest.raises(ConfigError, match=message):
        gan(model_d, solver_d)
