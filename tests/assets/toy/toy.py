"""A tiny regression project for distributed tests: records what each rank saw and its losses."""

import json
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ds_report  # noqa: E402,F401  (registers ReportDeepSpeedConfigHook for the plan tests)

from engine import comm
from engine.data.build import BUILD_DATASET_REGISTRY
from engine.data.dataset import EngineDataSet
from engine.model.base_model import BaseModel
from engine.model.build import BUILD_MODEL_REGISTRY, BUILD_NETWORK_REGISTRY
from engine.trainer.build import BUILD_TRAINER_REGISTRY
from engine.trainer.trainer import BaseTrainer


@BUILD_DATASET_REGISTRY.register()
class ToyRegression(EngineDataSet):
    """y = x·w + noise, 256 fixed samples; each item carries its index."""

    def __init__(self, size=256, dim=8, transformer=None):
        super().__init__(transformer)
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(size, dim, generator=g)
        self.y = self.x @ torch.randn(dim, 1, generator=g) / dim ** 0.5 + 0.01 * torch.randn(size, 1, generator=g)

    def __getitem__(self, index):
        return {"x": self.x[index], "y": self.y[index], "index": index}

    def __len__(self):
        return len(self.x)


@BUILD_NETWORK_REGISTRY.register()
class ToyMLP(nn.Module):
    """``nan_at_call``: on rank 0, the n-th training forward (1-based) returns NaN (solver.nan_policy tests)."""

    def __init__(self, dim=8, hidden=16, nan_at_call=0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.nan_at_call, self.calls = nan_at_call, 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls == self.nan_at_call and comm.get_rank() == 0:
                out = out * float("nan")
        return out


@BUILD_MODEL_REGISTRY.register()
class ToyModel(BaseModel):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.seen = []

    def run_step(self, data, *, epoch=None, **kwargs):
        if self.g_model.training:
            self.seen.extend(int(i) for i in data["index"])
        pred = self.g_model(data["x"].to(self.device))
        return nn.functional.mse_loss(pred, data["y"].to(self.device))

    def generator(self, data):
        return self.g_model(data.to(self.device))


@BUILD_TRAINER_REGISTRY.register()
class ToyTrainer(BaseTrainer):
    """Writes seen indices and per-step losses of this rank to output_dir/record_rank<r>.json."""

    def before_loop(self):
        self.losses = []
        self.weight_sums = []  # full parameters only below ZeRO-3

    def iterate_after(self, epoch, loss_dict):
        self.losses.append(float(loss_dict["loss"]))
        self.weight_sums.append(sum(float(p.detach().double().sum()) for p in self.model.g_model.module.parameters()))

    def after_loop(self):
        path = os.path.join(self.cfg.OUTPUT_DIR, f"record_rank{comm.get_rank()}.json")
        with open(path, "w") as f:
            json.dump({"seen": self.model.seen, "losses": self.losses, "weight_sums": self.weight_sums,
                       "metrics": self.latest_metrics,
                       "world_size": comm.get_world_size(), "lr": self.model.learning_rates()}, f)


@BUILD_TRAINER_REGISTRY.register()
class DumpTrainer(ToyTrainer):
    """Also writes the live generator weights, gathered, to output_dir/live.pt (export round-trip tests)."""

    def after_loop(self):
        import deepspeed

        super().after_loop()
        net = self.model.g_model.module
        with deepspeed.zero.GatheredParameters(list(net.parameters())):
            state = {k: v.detach().clone().float() for k, v in net.state_dict().items()}
        if comm.get_rank() == 0:
            torch.save(state, os.path.join(self.cfg.OUTPUT_DIR, "live.pt"))
