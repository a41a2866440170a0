"""LR values of engine's warm-up schedulers at chosen steps, against hand-computed numbers."""

from __future__ import annotations

import io
import logging
import math

import pytest
import torch

from engine.errors import ConfigError
from engine.solver import (
    LRMultiplierScheduler,
    WarmupCosineLR,
    WarmupMultiplier,
    WarmupMultiStepLR,
    WarmupPolynomialDecay,
)
from engine.solver.multiplier import build_shape


def _optimizer(lr: float = 0.01, groups: int = 1) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr * (i + 1)} for i in range(groups)]
    return torch.optim.SGD(params, lr=lr)


def _lrs_at(scheduler, optimizer, steps):
    """Step the scheduler as training does and record the group-0 LR at each wanted step."""
    wanted, out, step = sorted(steps), {}, 0
    for target in wanted:
        while step < target:
            optimizer.step()
            scheduler.step()
            step += 1
        assert scheduler.get_last_lr()[0] == optimizer.param_groups[0]["lr"]
        out[target] = optimizer.param_groups[0]["lr"]
    return out


SEED_PARAMS = dict(
    lr_scheduler_param=dict(name="WarmupMultiStepLR", gamma=0.1, steps=[40000, 120000, 180000, 240000]),
    max_iter=200000,
    warmup_factor=0.01,
    warmup_iter=500,
    warmup_method="linear",
)


def test_seed_example_config(caplog):
    opt = _optimizer(lr=0.01)
    with caplog.at_level(logging.WARNING, logger="engine.solver"):
        sched = LRMultiplierScheduler(opt, **SEED_PARAMS)
    assert "240000" in caplog.text  # the step past max_iter is reported, not fatal
    got = _lrs_at(sched, opt, [0, 250, 500, 39999, 40000, 120000])
    expected = {
        0: 0.01 * 0.01,                      # warmup_factor x base
        250: 0.01 * (0.01 * 0.5 + 1 * 0.5),  # halfway along the linear ramp
        500: 0.01,
        39999: 0.01,
        40000: 0.001,
        120000: 0.0001,
    }
    for step, lr in expected.items():
        assert got[step] == pytest.approx(lr, rel=1e-12), step


def test_multistep_constant_warmup():
    opt = _optimizer(lr=1.0)
    sched = WarmupMultiStepLR(opt, max_iter=1000, steps=[500, 800], gamma=0.5,
                              warmup_factor=0.1, warmup_iter=100, warmup_method="constant")
    got = _lrs_at(sched, opt, [0, 1, 99, 100, 499, 500, 799, 800, 999, 1000, 1005])
    expected = {0: 0.1, 1: 0.1, 99: 0.1, 100: 1.0, 499: 1.0, 500: 0.5, 799: 0.5, 800: 0.25,
                999: 0.25, 1000: 0.25, 1005: 0.25}  # past max_iter: the final value is held
    assert got == pytest.approx(expected)


def test_cosine_linear_warmup():
    opt = _optimizer(lr=2.0)
    sched = WarmupCosineLR(opt, max_iter=1000, warmup_factor=0.1, warmup_iter=100)
    got = _lrs_at(sched, opt, [0, 50, 100, 500, 750, 1000])
    cos_at = lambda t: 0.5 * (1 + math.cos(math.pi * t / 1000))  # noqa: E731
    expected = {
        0: 2.0 * 0.1,
        50: 2.0 * (0.5 * 0.1 + 0.5 * cos_at(100)),  # ramps to the cosine's value at warm-up end
        100: 2.0 * cos_at(100),
        500: 2.0 * 0.5,
        750: 2.0 * cos_at(750),
        1000: 0.0,
    }
    assert got == pytest.approx(expected, abs=1e-12)


def test_cosine_end_value_is_a_multiple_of_each_groups_base_lr():
    opt = _optimizer(lr=1.0, groups=2)  # base LRs 1.0 and 2.0
    sched = WarmupCosineLR(opt, max_iter=100, end_value=0.1, warmup_iter=0)
    for _ in range(50):
        opt.step()
        sched.step()
    assert sched.get_last_lr() == pytest.approx([0.55, 1.1])
    for _ in range(50):
        opt.step()
        sched.step()
    assert sched.get_last_lr() == pytest.approx([0.1, 0.2])


@pytest.mark.parametrize("method, expected_at_10", [("linear", 0.5 * 0.2 + 0.5 * 0.8 ** 2), ("constant", 0.2)])
def test_polynomial_decay(method, expected_at_10):
    opt = _optimizer(lr=1.0)
    sched = WarmupPolynomialDecay(opt, max_iter=100, power=2.0, end_value=0.0,
                                  warmup_factor=0.2, warmup_iter=20, warmup_method=method)
    got = _lrs_at(sched, opt, [0, 10, 20, 50, 90, 100])
    assert got[0] == pytest.approx(0.2)
    assert got[10] == pytest.approx(expected_at_10)
    assert got[20] == pytest.approx(0.8 ** 2)
    assert got[50] == pytest.approx(0.25)
    assert got[90] == pytest.approx(0.01)
    assert got[100] == pytest.approx(0.0)


def test_polynomial_end_value():
    opt = _optimizer(lr=1.0)
    sched = LRMultiplierScheduler(opt, dict(name="WarmupPolynomialDecay", power=2.0, end_value=0.1),
                                  max_iter=1000, warmup_iter=0)
    got = _lrs_at(sched, opt, [0, 500, 900, 1000])
    assert got == pytest.approx({0: 1.0, 500: 0.1 + 0.9 * 0.25, 900: 0.1 + 0.9 * 0.01, 1000: 0.1})


@pytest.mark.parametrize("flat, nested", [
    (dict(cls=WarmupMultiStepLR, steps=[30, 60], gamma=0.3), dict(name="WarmupMultiStepLR", steps=[30, 60], gamma=0.3)),
    (dict(cls=WarmupCosineLR, end_value=0.05), dict(name="WarmupCosineLR", end_value=0.05)),
    (dict(cls=WarmupPolynomialDecay, power=1.5, end_value=0.01),
     dict(name="WarmupPolynomialDecay", power=1.5, end_value=0.01)),
])
def test_flat_types_equal_the_general_form(flat, nested):
    flat = dict(flat)
    cls = flat.pop("cls")
    common = dict(max_iter=100, warmup_factor=0.05, warmup_iter=10, warmup_method="linear")
    a_opt, b_opt = _optimizer(), _optimizer()
    a = cls(a_opt, **flat, **common)
    b = LRMultiplierScheduler(b_opt, nested, **common)
    steps = list(range(0, 101, 7))
    assert _lrs_at(a, a_opt, steps) == _lrs_at(b, b_opt, steps)


@pytest.mark.parametrize("make", [
    lambda o: LRMultiplierScheduler(o, **SEED_PARAMS),
    lambda o: WarmupCosineLR(o, max_iter=300, warmup_iter=40, warmup_factor=0.01),
    lambda o: WarmupPolynomialDecay(o, max_iter=300, warmup_iter=40, warmup_method="constant"),
])
def test_state_dict_round_trip_continues_the_schedule(make):
    straight_opt = _optimizer(groups=2)
    straight = make(straight_opt)
    reference = []
    for _ in range(120):
        straight_opt.step()
        straight.step()
        reference.append(list(straight.get_last_lr()))

    first_opt = _optimizer(groups=2)
    first = make(first_opt)
    for _ in range(37):
        first_opt.step()
        first.step()
    buffer = io.BytesIO()
    torch.save({"sched": first.state_dict(), "opt": first_opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # plain data only: loads without pickle

    resumed_opt = _optimizer(groups=2)
    resumed = make(resumed_opt)
    resumed.load_state_dict(saved["sched"])  # scheduler alone: LRs already right at step 37
    assert resumed.get_last_lr() == reference[36]
    assert [g["lr"] for g in resumed_opt.param_groups] == reference[36]
    resumed_opt.load_state_dict(saved["opt"])
    for step in range(37, 120):
        resumed_opt.step()
        resumed.step()
        assert resumed.get_last_lr() == reference[step], step


def test_resume_with_a_changed_schedule_warns(caplog):
    opt = _optimizer()
    sched = WarmupCosineLR(opt, max_iter=100, warmup_iter=10)
    state = sched.state_dict()
    other = WarmupCosineLR(_optimizer(), max_iter=200, warmup_iter=10)
    with caplog.at_level(logging.WARNING, logger="engine.solver"):
        other.load_state_dict(state)
    assert "max_iter" in caplog.text


def test_multistep_is_exact_past_a_million_iterations():
    # fvcore's 1e-6 tolerance would move these boundaries by several iterations
    mult = WarmupMultiplier(build_shape(dict(name="WarmupMultiStepLR", steps=[4_000_000]), 10_000_000),
                            10_000_000, warmup_factor=0.5, warmup_iter=2_000_000)
    assert mult(3_999_999) == 1.0
    assert mult(4_000_000) == pytest.approx(0.1)
    assert mult(1_999_999) < 1.0
    assert mult(2_000_000) == 1.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(warmup_method="cosine"), "warmup_method.*linear"),
    (dict(warmup_iter=-1), r"warmup_iter.*non-negative"),
    (dict(max_iter=0), "max_iter"),
    (dict(lr_scheduler_param=dict(name="WarmupMultiStep", steps=[10])), "Did you mean 'WarmupMultiStepLR'"),
    (dict(lr_scheduler_param=dict(name="WarmupMultiStepLR", step=[10])), "lr_scheduler_param.step: unknown parameter of 'WarmupMultiStepLR'. Did you mean 'steps'"),
    (dict(lr_scheduler_param=dict(name="WarmupMultiStepLR", steps=[50, 20])), "strictly increasing"),
    (dict(lr_scheduler_param=dict(gamma=0.1)), "'name' key"),
])
def test_bad_parameters(kwargs, match):
    params = dict(lr_scheduler_param=dict(name="WarmupMultiStepLR", steps=[10]), max_iter=100,
                  warmup_iter=10, warmup_method="linear")
    params.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        LRMultiplierScheduler(_optimizer(), **params)


def test_shape_name_is_case_insensitive():
    opt = _optimizer(lr=1.0)
    sched = LRMultiplierScheduler(opt, dict(name="warmupcosinelr"), max_iter=10, warmup_iter=0)
    assert sched.get_last_lr() == [1.0]


def test_parameters_of_another_shape_are_ignored_with_a_warning(caplog):
    """A base's multi-step items under a child's cosine: the seed ignored them, engine warns."""
    opt = _optimizer(lr=1.0)
    param = dict(name="WarmupCosineLR", gamma=0.1, steps=[5], end_value=0.5, my_note="x")
    with caplog.at_level(logging.WARNING, logger="engine.solver"):
        sched = LRMultiplierScheduler(opt, param, max_iter=10, warmup_iter=0)
    assert "gamma, steps, my_note not used by 'WarmupCosineLR'" in caplog.text
    plain = LRMultiplierScheduler(_optimizer(lr=1.0), dict(name="WarmupCosineLR", end_value=0.5), max_iter=10,
                                  warmup_iter=0)
    assert [sched.multiplier(t) for t in range(11)] == [plain.multiplier(t) for t in range(11)]


@pytest.mark.parametrize("param, meant", [
    (dict(name="WarmupCosineLR", gama=0.1), "gamma"),          # typo of another shape's parameter
    (dict(name="WarmupCosineLR", end_valeu=0.1), "end_value"),  # typo of its own
    (dict(name="WarmupMultiStepLR", steps=[5], stpes=[6]), "steps"),
])
def test_misspelled_shape_parameters_stay_errors(param, meant):
    with pytest.raises(ConfigError, match=f"Did you mean '{meant}'"):
        LRMultiplierScheduler(_optimizer(), param, max_iter=10, warmup_iter=0)


def test_seed_cosine_start_value_scales_the_curve():
    sched = LRMultiplierScheduler(_optimizer(), dict(name="WarmupCosineLR", start_value=0.5), max_iter=10,
                                  warmup_iter=0)
    assert sched.multiplier(0) == pytest.approx(0.5)
    assert sched.multiplier(5) == pytest.approx(0.25)
    assert sched.multiplier(10) == pytest.approx(0.0)


def test_warmup_longer_than_the_run_is_clamped_with_a_warning(caplog):
    """``--opts solver.max_iter 2`` under a 1000-step warm-up: the seed makes the whole run warm-up."""
    with caplog.at_level(logging.WARNING, logger="engine.solver"):
        mult = WarmupMultiplier(build_shape(dict(name="WarmupMultiStepLR", steps=[]), 4), 4,
                                warmup_factor=0.2, warmup_iter=1000)
    assert "warmup_iter=1000 is longer than max_iter=4: clamped to 4" in caplog.text
    assert mult.warmup_iter == 4
    assert [mult(t) for t in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
