"""Start-up cuts: DeepSpeed's op probe on first read, a light ``import engine.schedule``."""

import types

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
