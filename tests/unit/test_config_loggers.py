"""trainer.loggers at config check: unknown and missing-package names fail there; trainer.tensorboard agrees."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest

import engine.config.loggers as config_loggers
from engine.config import build_cfg
from engine.errors import ConfigError
from engine.trackers import TRACKER_REGISTRY, TrackerWriter

MINIMAL = {
    "trainer": {"model": {"name": "M", "generator": {"name": "Net"}}},
    "dataloader": {"train_data_set": {"name": "D", "transformer": []}},
}


def build(**trainer):
    data = copy.deepcopy(MINIMAL)
    data["trainer"].update(trainer)
    cfg = build_cfg(data)
    return list(cfg.TRAINER.LOGGERS), cfg.TRAINER.TENSORBOARD


def test_default_is_tensorboard_as_before():
    assert build() == (["tensorboard"], True)


def test_names_are_case_insensitive_and_kept_in_order():
    assert build(loggers=["JSONL", "csv", "tensorboard"]) == (["jsonl", "csv", "tensorboard"], True)


def test_unknown_name_fails_with_path_value_valid_names_and_the_closest():
    with pytest.raises(ConfigError) as err:
        build(loggers=["tensorboard", "mlfow"])
    message = str(err.value)
    assert message.startswith("trainer.loggers[1] = 'mlfow': unknown tracker.")
    assert "Did you mean 'mlflow'?" in message and "Valid names: csv, jsonl, mlflow, tensorboard, wandb" in message


@pytest.mark.parametrize("value, message", [
    ("csv", "trainer.loggers: expected list"),
    (["csv", 1], "trainer.loggers[1] = 1: expected a tracker name"),
    (["csv", "CSV"], "trainer.loggers[1] = 'CSV' repeats trainer.loggers[0]"),
])
def test_malformed_lists_fail_naming_the_entry(value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(loggers=value)


def test_a_tracker_whose_package_is_missing_fails_naming_the_pip_package(monkeypatch):
    class Absent(TrackerWriter):
        name = "absent_backend"
        module = "engine_tests_backend_that_is_not_installed"
        pip = "engine-tests-backend"

    monkeypatch.setitem(TRACKER_REGISTRY._obj_map, Absent.name, Absent)  # removed again after the test
    with pytest.raises(ConfigError) as err:
        build(loggers=["csv", "absent_backend"])
    assert str(err.value) == (
        "trainer.loggers[1] = 'absent_backend' needs the Python package 'engine-tests-backend' (module "
        "'engine_tests_backend_that_is_not_installed'), which is not installed: pip install engine-tests-backend")


@pytest.mark.parametrize("name, pip", [("mlflow", "mlflow-skinny"), ("wandb", "wandb"), ("tensorboard", "tensorboard")])
def test_the_built_in_backends_name_their_pip_package(name, pip):
    assert TRACKER_REGISTRY.get(name).pip == pip


def test_seed_tensorboard_switch_alone_still_turns_tensorboard_off_and_on():
    assert build(tensorboard=False) == ([], False)
    assert build(tensorboard=True) == (["tensorboard"], True)


def test_loggers_alone_decide_and_the_switch_follows():
    assert build(loggers=["csv"]) == (["csv"], False)
    assert build(loggers=[]) == ([], False)


def test_a_conflict_warns_once_and_loggers_decide(caplog, monkeypatch):
    monkeypatch.setattr(config_loggers, "_said", set())  # what earlier tests warned about does not count
    with caplog.at_level(logging.WARNING, logger="engine"):
        assert build(loggers=["jsonl"], tensorboard=True) == (["jsonl"], False)
        assert build(loggers=["jsonl"], tensorboard=True) == (["jsonl"], False)  # the same config built again
        assert build(loggers=["jsonl", "tensorboard"], tensorboard=True) == (["jsonl", "tensorboard"], True)
    warnings = [r.getMessage() for r in caplog.records if "disagrees" in r.getMessage()]
    assert not any("not written yet" in r.getMessage() for r in caplog.records)  # the loop feeds every tracker
    assert warnings == ["trainer.tensorboard = True disagrees with trainer.loggers = ['jsonl']: trainer.loggers "
                        "decides (TensorBoard is off); remove trainer.tensorboard from the config"]


def test_the_error_shown_in_docs_is_the_one_given():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "trackers.md").read_text(encoding="utf-8")
    shown = next(line for line in docs.splitlines() if "unknown tracker" in line)
    with pytest.raises(ConfigError) as err:
        build(loggers=["tensorboard", "mlfow"])
    assert shown == f"engine: error: {err.value}"
