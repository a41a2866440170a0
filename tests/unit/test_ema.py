"""EMA arithmetic (update rule, warm-up), swap exactness and state round trip, on a plain module."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from engine.config import build_cfg
from engine.config.loader import merge
from engine.errors import ConfigError
from engine.model.ema import ModelEMA, consolidate_ema, warmup_decay

MINIMAL = {"trainer": {"model": {"name": "M", "generator": {"name": "Net"}}},
           "dataloader": {"train_data_set": {"name": "D"}}}


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def test_warmup_rule_and_switch():
    assert warmup_decay(0.999, 0) == pytest.approx(1 / 10)
    assert warmup_decay(0.999, 5) == pytest.approx(6 / 15)
    assert warmup_decay(0.9, 1000) == 0.9  # capped by the decay rate
    assert warmup_decay(0.999, -1) == 0.999  # -1: no warm-up


@pytest.mark.parametrize("num_updates", [0, 7, -1])
def test_update_follows_the_formula_step_by_step(num_updates):
    module = net()
    ema = ModelEMA(SimpleNamespace(module=module), decay=0.99, num_updates=num_updates)
    reference = {k: v.detach().clone().float() for k, v in module.state_dict().items()}
    n = max(num_updates, 0)
    for _ in range(5):
        with torch.no_grad():
            for p in module.parameters():
                p.add_(torch.randn_like(p))
        module(torch.randn(8, 4))  # moves BatchNorm running stats (floating buffers are averaged too)
        ema.update()
        d = 0.99 if num_updates < 0 else min(0.99, (1 + n) / (10 + n))
        n += 1
        for key, live in module.state_dict().items():
            if live.is_floating_point():
                reference[key] = d * reference[key] + (1 - d) * live.float()
            else:
                reference[key] = live.clone()  # integer buffers (num_batches_tracked) are copied
    full = ema.full_state_dict()
    assert sorted(full) == sorted(reference)
    for key in reference:
        assert torch.allclose(full[key].float(), reference[key].float(), atol=1e-6), key
    assert ema.num_updates == max(num_updates, 0) + 5


def test_swap_runs_on_ema_and_restores_training_weights_bitwise():
    module = net().eval()
    ema = ModelEMA(SimpleNamespace(module=module), decay=0.5)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(1.7).add_(0.3)
    ema.update()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    x = torch.randn(5, 4)
    reference = net().eval()
    reference.load_state_dict(ema.full_state_dict())
    with ema.swapped():
        with ema.swapped():  # nested: still EMA
            assert torch.allclose(module(x), reference(x))
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_state_round_trip_and_consolidate():
    module = net()
    ema = ModelEMA(SimpleNamespace(module=module), decay=0.9)
    ema.update()
    state = ema.state_dict()
    other = ModelEMA(SimpleNamespace(module=net()), decay=0.9)
    other.load_state_dict(state)
    assert other.num_updates == 1
    assert all(torch.equal(a, b) for a, b in zip(ema.full_state_dict().values(), other.full_state_dict().values()))
    strict = net()
    strict.load_state_dict(consolidate_ema([state]), strict=True)


def test_consolidate_reassembles_zero3_shards():
    weight = torch.arange(7.0).view(7, 1)  # 7 elements on 2 ranks: 4 + 3 and one padding element
    shards = [weight.view(-1)[:4], torch.cat([weight.view(-1)[4:], torch.tensor([99.0])])]
    states = [{"sharded": True, "rank": r, "world_size": 2, "shapes": {"w": (7, 1)}, "params": {"w": shards[r]},
               "buffers": {}} for r in (1, 0)]
    assert torch.equal(consolidate_ema(states)["w"], weight)


@pytest.mark.parametrize("override,message", [
    ({"solver": {"ema": {"enabled": True, "decay_rate": 1.5}}}, r"solver\.ema\.decay_rate .*= 1\.5.*\[0, 1\]"),
    ({"trainer": {"model": {"ema": {"enable": True, "decay_rate": -0.1}}}}, r"decay_rate"),
])
def test_bad_decay_rate_is_rejected_with_its_key(override, message):
    with pytest.raises(ConfigError, match=message):
        build_cfg(merge(MINIMAL, override))


def test_ema_config_is_accepted_in_both_spellings():
    cfg = build_cfg(merge(MINIMAL, {"trainer": {"model": {"ema": {"enable": True, "decay_rate": 0.995}}}}))
    assert cfg.SOLVER.EMA.ENABLED is True and cfg.SOLVER.EMA.DECAY_RATE == 0.995
