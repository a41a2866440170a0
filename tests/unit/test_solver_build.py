"""Building optimizers and LR schedulers from config dicts, and the errors bad ones give."""

from __future__ import annotations

import pytest
import torch

from engine.config.node import CfgNode
from engine.errors import ConfigError
from engine.solver import (
    LR_SCHEDULER_REGISTRY,
    OPTIMIZER_REGISTRY,
    LRMultiplierScheduler,
    WarmupMultiStepLR,
    build_lr_scheduler,
    build_optimizer,
    lr_scheduler_factory,
)

WHERE = "solver.generator.lr_scheduler"
OPT_WHERE = "solver.generator.optimizer"


def _params():
    return [torch.nn.Parameter(torch.zeros(3))]


def _sgd(lr: float = 0.1):
    return torch.optim.SGD(_params(), lr=lr)


def _run(sched, opt, n):
    lrs = [sched.get_last_lr()[0]]
    for _ in range(n):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    return lrs


# ---- LR schedulers ---------------------------------------------------------------------------

def test_torch_step_lr_from_spec():
    opt = _sgd(0.1)
    sched = build_lr_scheduler(dict(enabled=True, type="StepLR", params=dict(step_size=3, gamma=0.5)), opt, where=WHERE)
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR)
    assert _run(sched, opt, 7) == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025])


def test_seed_spec_as_config_node():
    spec = CfgNode(dict(enabled=True, type="LRMultiplierScheduler", params=dict(
        lr_scheduler_param=dict(name="WarmupMultiStepLR", gamma=0.1, steps=[40000, 120000, 180000, 240000]),
        max_iter=200000, warmup_factor=0.01, warmup_iter=500, warmup_method="linear")))
    spec.freeze()
    opt = torch.optim.Adam(_params(), lr=0.01)
    sched = build_lr_scheduler(spec, opt, where=WHERE)
    assert isinstance(sched, LRMultiplierScheduler)
    assert sched.get_last_lr() == pytest.approx([1e-4])


def test_flat_engine_type_from_spec():
    opt = _sgd(1.0)
    spec = dict(enabled=True, type="WarmupMultiStepLR",
                params=dict(max_iter=10, steps=[5], gamma=0.1, warmup_iter=2, warmup_factor=0.5))
    sched = build_lr_scheduler(spec, opt, where=WHERE)
    assert isinstance(sched, WarmupMultiStepLR)
    assert _run(sched, opt, 6) == pytest.approx([0.5, 0.75, 1.0, 1.0, 1.0, 0.1, 0.1])


@pytest.mark.parametrize("spec", [None, {}, dict(enabled=False, type="StepLR", params=dict(step_size=1)),
                                  dict(type="StepLR", params=dict(step_size=1))])
def test_disabled_or_missing_gives_none(spec):
    assert build_lr_scheduler(spec, _sgd(), where=WHERE) is None
    assert lr_scheduler_factory(spec, where=WHERE) is None


def test_defaults_fill_only_accepted_and_missing_params():
    opt = _sgd(1.0)
    spec = dict(enabled=True, type="WarmupCosineLR", params=dict(warmup_iter=0))
    sched = build_lr_scheduler(spec, opt, where=WHERE, defaults=dict(max_iter=10, total_steps=99))
    assert sched.max_iter == 10
    spec = dict(enabled=True, type="WarmupCosineLR", params=dict(warmup_iter=0, max_iter=20))
    assert build_lr_scheduler(spec, _sgd(), where=WHERE, defaults=dict(max_iter=10)).max_iter == 20


def test_sequential_lr_with_nested_specs():
    opt = _sgd(1.0)
    spec = dict(enabled=True, type="SequentialLR", params=dict(
        schedulers=[dict(type="ConstantLR", params=dict(factor=0.5, total_iters=2)),
                    dict(type="ExponentialLR", params=dict(gamma=0.5))],
        milestones=[2]))
    sched = build_lr_scheduler(spec, opt, where=WHERE)
    assert _run(sched, opt, 4) == pytest.approx([0.5, 0.5, 1.0, 0.5, 0.25])


def test_nested_spec_error_names_its_index():
    spec = dict(enabled=True, type="SequentialLR", params=dict(
        schedulers=[dict(type="ConstantLR", params={}), dict(type="ExponentalLR", params=dict(gamma=0.5))],
        milestones=[2]))
    with pytest.raises(ConfigError, match=r"lr_scheduler\.params\.schedulers\[1\]\.type.*'ExponentialLR'"):
        build_lr_scheduler(spec, _sgd(), where=WHERE)


def test_every_torch_scheduler_but_callable_ones_is_registered():
    names = set(LR_SCHEDULER_REGISTRY.names())
    for name in ("StepLR", "MultiStepLR", "CosineAnnealingLR", "OneCycleLR", "CyclicLR", "ConstantLR",
                 "LinearLR", "PolynomialLR", "CosineAnnealingWarmRestarts", "LRMultiplierScheduler",
                 "WarmupMultiStepLR", "WarmupCosineLR", "WarmupPolynomialDecay"):
        assert name in names
    assert not names & {"LambdaLR", "MultiplicativeLR", "ReduceLROnPlateau", "LRScheduler"}


@pytest.mark.parametrize("type_name, reason", [("LambdaLR", "Python function"),
                                               ("reducelronplateau", "validation metric")])
def test_unsupported_torch_schedulers_say_why(type_name, reason):
    with pytest.raises(ConfigError, match=rf"^{WHERE}\.type: .* is not supported: .*{reason}"):
        build_lr_scheduler(dict(enabled=True, type=type_name, params={}), _sgd(), where=WHERE)


def test_unknown_scheduler_type_names_key_value_and_closest():
    spec = dict(enabled=True, type="WarmupMultiStep", params={})
    with pytest.raises(ConfigError) as info:
        build_lr_scheduler(spec, _sgd(), where=WHERE)
    msg = str(info.value)
    assert msg.startswith(f"{WHERE}.type:")
    assert "'WarmupMultiStep'" in msg and "Did you mean 'WarmupMultiStepLR'" in msg


def test_enabled_without_type_is_an_error():
    with pytest.raises(ConfigError, match=rf"^{WHERE}\.type: unknown LR scheduler ''"):
        build_lr_scheduler(dict(enabled=True, type="", params={}), _sgd(), where=WHERE)


def test_scheduler_type_case_insensitive():
    sched = build_lr_scheduler(dict(enabled=True, type="steplr", params=dict(step_size=2)), _sgd(), where=WHERE)
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR)


@pytest.mark.parametrize("spec, match", [
    (dict(type="StepLR", params=dict(step_sise=3)), r"\.params: unexpected parameter 'step_sise'.*'step_size'"),
    (dict(type="StepLR", params={}), r"\.params: missing required parameter\(s\) 'step_size'"),
    (dict(type="CosineAnnealingWarmRestarts", params=dict(T_0=0)),
     r"\.params: CosineAnnealingWarmRestarts rejected the value: Expected positive integer T_0"),
    (dict(type="LRMultiplierScheduler", params=dict(max_iter=100, lr_scheduler_param=dict(name="Cosine"))),
     r"\.params: lr_scheduler_param\.name: unknown schedule 'Cosine'"),
    (dict(type="WarmupCosineLR", params=dict(max_iter=100, warmup_iter=10, warmup_method="exp")),
     r"\.params: warmup_method"),
    (dict(type="WarmupCosineLR", params=dict(max_iter=100, warmup_iter=-5)), r"\.params: warmup_iter: .*non-negative"),
    (dict(type="StepLR", params=[3]), r"\.params: expected a dict"),
])
def test_bad_scheduler_params_name_the_params_path(spec, match):
    spec = dict(spec, enabled=True)
    with pytest.raises(ConfigError, match=rf"^{WHERE}{match}"):
        build_lr_scheduler(spec, _sgd(), where=WHERE)
    with pytest.raises(ConfigError, match=rf"^{WHERE}{match}"):
        lr_scheduler_factory(spec, where=WHERE)  # caught before any real optimizer exists


def test_factory_builds_on_the_optimizer_it_is_given():
    factory = lr_scheduler_factory(dict(enabled=True, type="StepLR", params=dict(step_size=1, gamma=0.5)), where=WHERE)
    opt = _sgd(0.4)
    sched = factory(opt)
    assert sched.optimizer is opt
    assert _run(sched, opt, 2) == pytest.approx([0.4, 0.2, 0.1])


# ---- optimizers ------------------------------------------------------------------------------

@pytest.mark.parametrize("type_name, cls", [("Adam", torch.optim.Adam), ("adam", torch.optim.Adam),
                                            ("ADAMW", torch.optim.AdamW), ("sgd", torch.optim.SGD),
                                            ("RMSprop", torch.optim.RMSprop)])
def test_optimizer_type_is_case_insensitive(type_name, cls):
    opt = build_optimizer(dict(type=type_name, params=dict(lr=0.01)), _params(), where=OPT_WHERE)
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.01


def test_optimizer_params_from_config_node_and_param_groups():
    spec = CfgNode(dict(type="Adam", params=dict(lr=0.01, weight_decay=1e-6, betas=[0.8, 0.9])))
    groups = [{"params": _params()}, {"params": _params(), "lr": 0.5}]
    opt = build_optimizer(spec, groups, where=OPT_WHERE)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.5]
    assert tuple(opt.param_groups[0]["betas"]) == (0.8, 0.9)
    assert opt.param_groups[0]["weight_decay"] == 1e-6


def test_registered_optimizer_is_found_first():
    @OPTIMIZER_REGISTRY.register()
    class MySGD(torch.optim.SGD):
        pass

    try:
        assert type(build_optimizer(dict(type="MySGD", params=dict(lr=0.1)), _params(), where=OPT_WHERE)) is MySGD
    finally:
        OPTIMIZER_REGISTRY._obj_map.pop("MySGD")


def test_unknown_optimizer_names_key_value_and_closest():
    with pytest.raises(ConfigError) as info:
        build_optimizer(dict(type="Adma", params=dict(lr=0.1)), _params(), where=OPT_WHERE)
    msg = str(info.value)
    assert msg.startswith(f"{OPT_WHERE}.type:") and "'Adma'" in msg and "'Adam'" in msg


@pytest.mark.parametrize("params, match", [
    (dict(lr=0.1, wieght_decay=0.1), r"\.params: unexpected parameter 'wieght_decay'.*'weight_decay'"),
    (dict(lr=-1.0), r"\.params: Adam rejected the value: Invalid learning rate"),
])
def test_bad_optimizer_params_name_the_params_path(params, match):
    with pytest.raises(ConfigError, match=rf"^{OPT_WHERE}{match}"):
        build_optimizer(dict(type="Adam", params=params), _params(), where=OPT_WHERE)


def test_solver_does_not_import_deepspeed():
    import subprocess
    import sys

    # engine.trainer rides in the same process: it imports engine.checkpoint at module level, whose
    # DeepSpeed checkpoint-engine subclass is made on first use only
    code = "import sys, engine.solver, engine.trainer; print('deepspeed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
