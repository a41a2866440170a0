"""Keys accepted for TrainFramework configs that engine does not act on are said once, not swallowed."""

from __future__ import annotations

import copy
import logging

import engine.config.no_effect as no_effect
from engine.config import build_cfg

MINIMAL = {
    "trainer": {"model": {"name": "M", "generator": {"name": "Net"}}},
    "dataloader": {"train_data_set": {"name": "D", "transformer": []}},
}


def build(clip: dict) -> None:
    data = copy.deepcopy(MINIMAL)
    data["solver"] = {"generator": {"clip_gradients": clip}}
    build_cfg(data)


def said(caplog) -> list:
    return [r.getMessage() for r in caplog.records if "has no effect" in r.getMessage()]


def test_clip_group_true_warns_once_naming_key_value_and_reason(caplog, monkeypatch):
    monkeypatch.setattr(no_effect, "_said", set())  # what earlier tests warned about does not count
    with caplog.at_level(logging.WARNING, logger="engine"):
        build({"enabled": True, "group": True})
        build({"enabled": True, "group": True})  # a second build in the same process says nothing new
    assert said(caplog) == ["solver.generator.clip_gradients.group = True has no effect: "
                            + no_effect.NO_EFFECT["solver.generator.clip_gradients.group"]]


def test_clip_group_false_or_unwritten_says_nothing(caplog, monkeypatch):
    monkeypatch.setattr(no_effect, "_said", set())
    with caplog.at_level(logging.WARNING, logger="engine"):
        build({"enabled": True, "group": False})  # what engine does anyway
        build({"enabled": True})
    assert said(caplog) == []


def test_max_rollbacks_without_the_rollback_policy_is_said_once(caplog, monkeypatch):
    monkeypatch.setattr(no_effect, "_said", set())
    with caplog.at_level(logging.WARNING, logger="engine"):
        for policy in ("stop", "stop", "rollback"):
            data = copy.deepcopy(MINIMAL)
            data["solver"] = {"max_rollbacks": 5, "nan_policy": policy}
            build_cfg(data)
    assert said(caplog) == ["solver.max_rollbacks = 5 has no effect: solver.nan_policy is 'stop'; it acts only "
                            "with solver.nan_policy = 'rollback'"]
