"""Start-up cuts: DeepSpeed's op probe on first read, a light ``import engine.schedule``, mlflow deferred."""

import importlib
import inspect
import sys
import types

import pytest

import engine
from engine.launch import _mark_incompatible


def _fake_ops(calls):
    ops = types.ModuleType("fake_ops")

    def probe():
        calls.append(1)
        return {"deepspeed_shm_comm": True, "cpu_adam": True}

    ops._probe_compatible_ops = probe
    return ops


def test_marking_an_op_off_defers_the_probe_until_another_op_is_read():
    calls = []
    ops = _fake_ops(calls)
    _mark_incompatible(ops, "deepspeed_shm_comm")
    table = ops.__compatible_ops__
    assert table.get("deepspeed_shm_comm", True) is False and calls == []
    assert table.get("cpu_adam", False) is True and calls == [1]
    assert table["deepspeed_shm_comm"] is False  # the hand-set value wins over the probe
    assert dict(table.items()) == {"deepspeed_shm_comm": False, "cpu_adam": True} and calls == [1]


def test_marking_an_op_off_edits_an_existing_table():
    calls = []
    ops = _fake_ops(calls)
    ops.__compatible_ops__ = {"deepspeed_shm_comm": True}
    _mark_incompatible(ops, "deepspeed_shm_comm")
    assert ops.__compatible_ops__ == {"deepspeed_shm_comm": False} and calls == []


def test_engine_schedule_resolves_base_scheduler_on_first_use():
    import engine.schedule
    from engine.schedule.scheduler import BaseScheduler

    assert engine.schedule.BaseScheduler is BaseScheduler
    try:
        engine.schedule.NoSuchName
    except AttributeError as exc:
        assert "NoSuchName" in str(exc)
    else:
        raise AssertionError("an unknown name resolved")


def _deferred_package(tmp_path, monkeypatch, name):
    """A package ``name`` (with a submodule ``sub``) whose bodies count their runs in ``RUNS``."""
    import builtins

    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import builtins\nbuiltins.RUNS.append('pkg')\nVALUE = 7\n")
    (pkg / "sub.py").write_text("import builtins\nbuiltins.RUNS.append('sub')\n")
    monkeypatch.setattr(builtins, "RUNS", [], raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", [engine.DeferredImport([name])] + sys.meta_path)
    monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delitem(sys.modules, f"{name}.sub", raising=False)
    return builtins.RUNS


def test_a_deferred_module_runs_on_first_use_not_on_import_or_a_modules_scan(tmp_path, monkeypatch):
    runs = _deferred_package(tmp_path, monkeypatch, "deferred_pkg_a")
    module = importlib.import_module("deferred_pkg_a")
    assert runs == []
    # torch.library's inspect.getmodule reads every module's __file__: that must not run it
    assert inspect.getmodule(test_a_deferred_module_runs_on_first_use_not_on_import_or_a_modules_scan).__name__ \
        == __name__ and runs == []
    assert module.__file__ == str(tmp_path / "deferred_pkg_a" / "__init__.py") and runs == []
    assert module.VALUE == 7 and runs == ["pkg"]
    assert module.VALUE == 7 and runs == ["pkg"] and type(module) is types.ModuleType
    assert importlib.import_module("deferred_pkg_a") is module and runs == ["pkg"]


def test_a_deferred_package_runs_before_its_submodule(tmp_path, monkeypatch):
    runs = _deferred_package(tmp_path, monkeypatch, "deferred_pkg_b")
    sub = importlib.import_module("deferred_pkg_b.sub")
    assert runs == ["pkg", "sub"] and sys.modules["deferred_pkg_b"].sub is sub


def test_a_missing_deferred_module_fails_at_import(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", [engine.DeferredImport(["no_such_pkg_xyz"])] + sys.meta_path)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("no_such_pkg_xyz")


def test_engine_defers_mlflow():
    assert "mlflow" in engine.DEFERRED_MODULES
    assert sum(isinstance(f, engine.DeferredImport) for f in sys.meta_path) == 1
