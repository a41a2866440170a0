"""Start-up cuts: DeepSpeed's op probe on first read, a light ``import engine.schedule``, mlflow and
DeepSpeed's Muon kernels deferred."""

import importlib
import inspect
import sys
import types

import pytest

import engine
from engine import deferred_import
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
    monkeypatch.setattr(sys, "meta_path", [engine.DeferredImport({name: deferred_import._DeferredLoader})] + sys.meta_path)
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
    finder = engine.DeferredImport({"no_such_pkg_xyz": deferred_import._DeferredLoader})
    monkeypatch.setattr(sys, "meta_path", [finder] + sys.meta_path)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("no_such_pkg_xyz")


def test_engine_defers_mlflow_and_deepspeeds_muon_kernels():
    assert {"mlflow", "deepspeed.runtime.zero.muon.original_muon"} <= set(engine.DEFERRED_MODULES)
    assert sum(isinstance(f, engine.DeferredImport) for f in sys.meta_path) == 1


FAKE_COMPILER = """
CALLS = []
def compile(**options):
    def decorate(fn):
        CALLS.append((fn.__name__, options))
        def compiled(*args):
            return fn(*args)
        compiled.tag = "compiled " + fn.__name__
        return compiled
    return decorate
"""
COMPILED_MODULE = """
import fake_compiler_c as compiler
@compiler.compile(mode="max")
def double_plus_one(x):
    return 2 * plus_one(x)
@compiler.compile()
def plus_one(x):
    return x + 1
"""


class _FakeCompiledLater(deferred_import._CompiledLater):
    compiler = "fake_compiler_c"


def test_compiled_functions_compile_together_on_the_first_call(tmp_path, monkeypatch):
    (tmp_path / "fake_compiler_c.py").write_text(FAKE_COMPILER)
    (tmp_path / "compiled_mod_c.py").write_text(COMPILED_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", [engine.DeferredImport({"compiled_mod_c": _FakeCompiledLater})]
                        + sys.meta_path)
    for name in ("fake_compiler_c", "compiled_mod_c"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    compiler = importlib.import_module("fake_compiler_c")
    real_compile = compiler.compile
    module = importlib.import_module("compiled_mod_c")
    assert compiler.CALLS == [] and compiler.compile is real_compile  # nothing compiled; the decorator restored
    stand_in = module.double_plus_one
    assert stand_in.__name__ == "double_plus_one" and stand_in(3) == 8
    assert compiler.CALLS == [("double_plus_one", {"mode": "max"}), ("plus_one", {})]  # both, as at import
    assert module.double_plus_one.tag == "compiled double_plus_one" and module.plus_one.tag == "compiled plus_one"
    assert stand_in.tag == "compiled double_plus_one" and stand_in(1) == 4 and len(compiler.CALLS) == 2


def test_deepspeeds_muon_kernels_resolve_to_torch_compile():
    from deepspeed.runtime.zero.muon import muon_optimizer, original_muon

    assert muon_optimizer.MuonWithAuxAdam.__mro__[1] is original_muon.MuonWithAuxAdam
    stand_in = original_muon.muon_update
    if isinstance(stand_in, deferred_import._CompileOnFirstCall):  # not compiled yet by an earlier test
        stand_in._resolve()
    for name in ("muon_update", "zeropower_via_newtonschulz5", "zeropower_via_gram_newtonschulz"):
        compiled = getattr(original_muon, name)
        assert not isinstance(compiled, deferred_import._CompileOnFirstCall), name
        assert compiled._torchdynamo_orig_callable.__name__ == name  # what torch.compile returns
    assert stand_in._compiled is original_muon.muon_update
