"""Run under torchrun: value clipping bounds every element's update at ZeRO 0-3 (SGD, lr 1)."""

import json
import os
import sys

import torch

from engine.model.engine_wrap import clip_grad_value_, wrap_network
from engine import launch

CLIP = 1e-3


def main(out_path: str) -> None:
    info = launch.read_launch_env()
    launch.configure_threads(info)
    launch.init_distributed(info, "cpu", shm_comm=False)
    results = {}
    for stage in range(4):
        torch.manual_seed(0)
        # 3 outputs: a bias whose size does not divide by the world size
        net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 3))
        before = {k: v.detach().clone() for k, v in net.state_dict().items()}
        solver = {"optimizer": {"type": "SGD", "params": {"lr": 1.0}}, "lr_scheduler": {"enabled": False}}
        ds = {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1,
              "train_batch_size": 4 * info.world_size, "zero_optimization": {"stage": stage},
              "zero_allow_untested_optimizer": True}
        engine = wrap_network(net, solver, ds, where="solver.generator", max_iter=1).engine
        x = torch.randn(4, 16) * 100  # huge gradients
        loss = engine(x).pow(2).sum()
        engine.backward(loss)
        clip_grad_value_(engine, CLIP)
        engine.step()
        if stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
                after = {k: v.detach().clone() for k, v in engine.module.state_dict().items()}
        else:
            after = {k: v.detach().clone() for k, v in engine.module.state_dict().items()}
        results[stage] = max((after[k] - before[k]).abs().max().item() for k in before)
    if info.rank == 0:
        with open(out_path, "w") as f:
            json.dump(results, f)
    launch.shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
