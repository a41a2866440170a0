"""A tiny GPT on Python's own standard library source, byte by byte (real text, no download).

One network serves every ``deepspeed`` section: it lists its blocks for activation
checkpointing, its layers for pipeline parallel and its column/row splits for tensor
parallel (see "Large models" in docs/large_models.md). Attention uses separate q/k/v projections and
infers the number of heads from the projection width, so a column-split projection on a
tensor-parallel rank simply holds fewer heads.
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any, Dict, List

import numpy as np
import torch
from torch import nn

from engine import comm
from engine.data.build import BUILD_DATASET_REGISTRY
from engine.data.dataset import EngineDataSet
from engine.model.base_model import BaseModel
from engine.model.build import BUILD_MODEL_REGISTRY, BUILD_NETWORK_REGISTRY
from engine.trainer.build import BUILD_TRAINER_REGISTRY
from engine.trainer.trainer import BaseTrainer

logger = logging.getLogger("engine")


def stdlib_bytes(limit: int) -> np.ndarray:
    """The first ``limit`` bytes of the standard library's ``.py`` files, in sorted path order."""
    root = os.path.dirname(os.__file__)
    chunks: List[bytes] = []
    total = 0
    for path in sorted(glob.glob(os.path.join(root, "*.py"))):
        with open(path, "rb") as f:
            chunks.append(f.read())
        total += len(chunks[-1])
        if total >= limit:
            break
    return np.frombuffer(b"".join(chunks)[:limit], dtype=np.uint8)


@BUILD_DATASET_REGISTRY.register()
class StdlibText(EngineDataSet):
    """Windows of ``block + 1`` bytes; ``split`` val takes the last tenth of the text."""

    def __init__(self, block: int = 64, limit: int = 400_000, split: str = "train", transformer=None):
        super().__init__(transformer)
        data = stdlib_bytes(limit)
        cut = len(data) * 9 // 10
        self.data = data[:cut] if split == "train" else data[cut:]
        self.block = block

    def __len__(self) -> int:
        return (len(self.data) - 1) // self.block

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        start = index * self.block
        return {"ids": torch.from_numpy(self.data[start:start + self.block + 1].astype(np.int64))}


class Embed(nn.Module):
    def __init__(self, vocab: int, width: int, block: int):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(block, width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))


class Block(nn.Module):
    """Pre-norm attention + MLP; q/k/v/up split by columns, proj/down by rows under TP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.head_dim = width // heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.q, self.k, self.v = (nn.Linear(width, width) for _ in range(3))
        self.proj = nn.Linear(width, width)
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h = self.ln1(x)
        q, k, v = (m(h).view(b, t, -1, self.head_dim).transpose(1, 2) for m in (self.q, self.k, self.v))
        att = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, -1))
        return x + self.down(nn.functional.gelu(self.up(self.ln2(x))))


class Head(nn.Module):
    def __init__(self, width: int, vocab: int):
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.ln(x))


@BUILD_NETWORK_REGISTRY.register()
class TinyGPT(nn.Module):
    checkpoint_blocks = ("blocks",)
    autotp_layer_specs = [
        {"patterns": [r".*\.(q|k|v|up)\.weight$"], "partition_type": "column"},
        {"patterns": [r".*\.(proj|down)\.weight$"], "partition_type": "row"},
    ]

    def __init__(self, vocab: int = 256, width: int = 128, depth: int = 4, heads: int = 4, block: int = 64):
        super().__init__()
        self.embed = Embed(vocab, width, block)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.head = Head(width, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def to_layers(self) -> List[nn.Module]:
        return [self.embed, *self.blocks, self.head]

    @staticmethod
    def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


@BUILD_MODEL_REGISTRY.register()
class GPTModel(BaseModel):
    def pipeline_inputs(self, data: Dict[str, torch.Tensor]):
        return data["ids"][:, :-1], data["ids"][:, 1:]

    def run_step(self, data: Dict[str, torch.Tensor], *, epoch: Any = None, **kwargs: Any) -> torch.Tensor:
        ids = data["ids"].to(self.device, non_blocking=True)
        return TinyGPT.loss_fn(self.g_model(ids[:, :-1]), ids[:, 1:])

    def num_items(self, data: Dict[str, torch.Tensor]) -> int:
        """The predicted tokens the loss averages over (see README: every window here is full)."""
        return data["ids"][:, 1:].numel()

    @torch.no_grad()
    def generator(self, prompt: torch.Tensor, new_tokens: int = 120, block: int = 64) -> torch.Tensor:
        """Greedy continuation; every rank must call it under ZeRO-3 or TP (forward is a collective)."""
        ids = prompt.to(self.device)
        for _ in range(new_tokens):
            logits = self.g_model(ids[:, -block:])
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        return ids


@BUILD_TRAINER_REGISTRY.register()
class GPTTrainer(BaseTrainer):
    """Prints a generated sample after training (not under a pipeline: there the engine owns forward)."""

    def after_loop(self) -> None:
        if self.model.pipelined:
            logger.info("sample: skipped (pipeline runs forward only inside train_batch/eval_batch)")
            return
        prompt = torch.tensor([list(b"def ")], dtype=torch.int64)
        self.model.disable_train()
        try:
            text = bytes(self.model.generator(prompt)[0].tolist()).decode("utf-8", "replace")
        finally:
            self.model.enable_train()
        if comm.is_main_process():
            logger.info("sample:\n" + text)
