"""The toy project with poisoned samples: ``PoisonRegression`` puts inf in the inputs of chosen indices.

For solver.nan_policy = 'rollback' and tools/replay_batch.py (tests/distributed/test_rollback.py).
``PoisonModel`` returns two outputs, ``loss`` (the MSE, inf for a poisoned sample) and
``target_abs`` (from the targets only, always finite), so a report can tell them apart;
``PoisonTrainer`` also writes the final weights to output_dir/live.pt.
"""

import os

import torch

import toy
from engine import comm
from engine.data.build import BUILD_DATASET_REGISTRY
from engine.model.build import BUILD_MODEL_REGISTRY
from engine.trainer.build import BUILD_TRAINER_REGISTRY


@BUILD_DATASET_REGISTRY.register()
class PoisonRegression(toy.ToyRegression):
    def __init__(self, poison=(), **kwargs):
        super().__init__(**kwargs)
        for index in poison:
            self.x[index] = float("inf")


@BUILD_MODEL_REGISTRY.register()
class PoisonModel(toy.ToyModel):
    def run_step(self, data, *, epoch=None, **kwargs):
        loss = super().run_step(data, epoch=epoch, **kwargs)
        return {"loss": loss, "target_abs": data["y"].abs().mean()}


@BUILD_TRAINER_REGISTRY.register()
class PoisonTrainer(toy.ToyTrainer):
    def after_loop(self):
        super().after_loop()
        if comm.get_rank() == 0:  # ZeRO-2: every rank holds the whole fp16/fp32 module weights
            state = {k: v.detach().clone() for k, v in self.model.g_model.module.state_dict().items()}
            torch.save(state, os.path.join(self.cfg.OUTPUT_DIR, "live.pt"))
