"""A deep MLP project for the large-model tests; records what each rank built, saw and lost.

``DeepMLP`` speaks both protocols of ``engine.model``: ``checkpoint_blocks`` (activation
checkpointing) and ``to_layers()`` + ``loss_fn`` (pipeline parallel); ``LargeModel`` gives
``pipeline_inputs``. Nothing in it depends on which deepspeed section the run uses.
"""

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
from engine.model.tensor_parallel import gathered_state_dict
from engine.model.zero_init import apply_gathered
from engine.trainer.build import BUILD_TRAINER_REGISTRY
from engine.trainer.trainer import BaseTrainer


@BUILD_DATASET_REGISTRY.register()
class LargeRegression(EngineDataSet):
    """y = tanh(x·w), 256 fixed samples."""

    def __init__(self, size=256, dim=8, transformer=None):
        super().__init__(transformer)
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(size, dim, generator=g)
        self.y = torch.tanh(self.x @ torch.randn(dim, 1, generator=g) / dim ** 0.5)

    def __getitem__(self, index):
        return {"x": self.x[index], "y": self.y[index]}

    def __len__(self):
        return len(self.x)


class Block(nn.Module):
    """A residual MLP: ``up`` splits by output columns and ``down`` by input rows under tensor parallel."""

    def __init__(self, hidden):
        super().__init__()
        self.up = nn.Linear(hidden, 2 * hidden)
        self.down = nn.Linear(2 * hidden, hidden)

    def forward(self, x):
        return x + self.down(torch.tanh(self.up(x)))


@BUILD_NETWORK_REGISTRY.register()
class DeepMLP(nn.Module):
    checkpoint_blocks = ("blocks",)  # each residual block recomputes its activations in backward
    autotp_layer_specs = [  # Megatron-style: column-parallel up, row-parallel down (one all-reduce per block)
        {"patterns": [r".*\.up\.weight$"], "partition_type": "column"},
        {"patterns": [r".*\.down\.weight$"], "partition_type": "row"},
    ]

    def __init__(self, dim=8, hidden=32, depth=4, init_pass=""):
        super().__init__()
        torch.manual_seed(0)  # the same start in every run, pipelined or not
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(Block(hidden) for _ in range(depth))
        self.head = nn.Linear(hidden, 1)
        # a whole-network init pass once the submodules exist: "apply" is the usual way (lost
        # under zero.Init), "gathered" engine's apply_gathered
        if init_pass == "apply":
            self.apply(self._init_weights)
        elif init_pass == "gathered":
            apply_gathered(self, self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        if isinstance(module, Block):  # a parent setting its child's weight, as GPT-2's scaled residual init
            nn.init.normal_(module.down.weight, std=0.02 / len(self.blocks) ** 0.5)

    def forward(self, x):
        x = self.inp(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def to_layers(self):
        return [self.inp, *self.blocks, self.head]

    @staticmethod
    def loss_fn(outputs, labels):
        return nn.functional.mse_loss(outputs.float(), labels.float())




@BUILD_MODEL_REGISTRY.register()
class LargeModel(BaseModel):
    def create_model(self, params):
        network = super().create_model(params)
        # what exists right after construction, before deepspeed.initialize touched it
        self.built = [[int(getattr(p, "ds_numel", p.numel())), int(getattr(p, "ds_tensor", p).numel())]
                      for p in network.parameters()]
        return network

    def pipeline_inputs(self, data):
        return data["x"], data["y"]

    def run_step(self, data, *, epoch=None, **kwargs):
        pred = self.g_model(self.to_device(data["x"]))  # in the run's bf16/fp16 when it has one
        return DeepMLP.loss_fn(pred, data["y"].to(self.device))

    def generator(self, data):
        return self.g_model(data.to(self.device))


@BUILD_TRAINER_REGISTRY.register()
class LargeTrainer(BaseTrainer):
    """Writes the construction record, losses and optimizer type to output_dir/record_rank<r>.json."""

    def before_loop(self):
        self.losses = []
        self.start_weights = None
        if not getattr(self.model, "pipelined", False):
            # whole weights whatever holds them (ZeRO-3 shards, TP shards): a collective
            self.start_weights = {k: v.float().tolist() for k, v in gathered_state_dict(self.model.g_model).items()}

    def iterate_after(self, epoch, loss_dict):
        self.losses.append(float(loss_dict["loss"]))

    def after_loop(self):
        optimizer = self.model.g_model.optimizer
        inner = getattr(optimizer, "optimizer", optimizer)
        path = os.path.join(self.cfg.OUTPUT_DIR, f"record_rank{comm.get_rank()}.json")
        with open(path, "w") as f:
            json.dump({"built": self.model.built, "losses": self.losses, "start_weights": self.start_weights,
                       "optimizer": type(inner).__module__ + "." + type(inner).__name__,
                       "dtype": str(next(self.model.g_model.module.parameters()).dtype)}, f)
