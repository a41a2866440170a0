"""A byte-level language model on padded, variable-length sequences (``num_items`` tests).

Each sequence is a slice of this file's bytes, 4 to 32 long, padded to 32 with label -100.
``PaddedLM`` averages its loss over the tokens that are not padding and says so through
``num_items``; ``PaddedLMMeanOfMeans`` is the same model without ``num_items`` (what
engine did before: a mean of per-micro-batch means). ``DumpTrainer`` (tests/assets/toy)
writes the final weights, gathered, to ``output_dir/live.pt``.
"""

import os
import sys

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "toy"))
import toy  # noqa: E402,F401  (registers DumpTrainer)

from engine.data.build import BUILD_DATASET_REGISTRY  # noqa: E402
from engine.data.dataset import EngineDataSet  # noqa: E402
from engine.model.base_model import BaseModel  # noqa: E402
from engine.model.build import BUILD_MODEL_REGISTRY, BUILD_NETWORK_REGISTRY  # noqa: E402

PAD_LABEL = -100
SEQ = 32

with open(os.path.abspath(__file__), "rb") as _source:
    TEXT = torch.tensor(list(_source.read()), dtype=torch.long)


@BUILD_DATASET_REGISTRY.register()
class ByteSequences(EngineDataSet):
    """``size`` slices of this file's bytes; sample ``i`` has ``4 + (7 i mod 29)`` tokens."""

    def __init__(self, size=64, transformer=None):
        super().__init__(transformer)
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        length = 4 + (7 * index) % 29
        start = (131 * index) % (len(TEXT) - SEQ - 1)
        tokens = TEXT[start:start + length + 1]
        inputs = torch.zeros(SEQ, dtype=torch.long)
        labels = torch.full((SEQ,), PAD_LABEL, dtype=torch.long)
        inputs[:length], labels[:length] = tokens[:-1], tokens[1:]
        return {"input": inputs, "label": labels}


@BUILD_NETWORK_REGISTRY.register()
class ByteBigramLM(nn.Module):
    """Next byte from the current one: embedding, one hidden layer, logits over 256 bytes.

    ``to_layers`` and ``loss_fn`` make it pipeline-able (``deepspeed.pipeline``).
    """

    def __init__(self, dim=16, hidden=32):
        super().__init__()
        self.embed = nn.Embedding(256, dim)
        self.hidden = nn.Linear(dim, hidden)
        self.head = nn.Linear(hidden, 256)

    def forward(self, tokens):
        for layer in self.to_layers():
            tokens = layer(tokens)
        return tokens

    def to_layers(self):
        return [self.embed, self.hidden, torch.tanh, self.head]

    @staticmethod
    def loss_fn(logits, labels):
        """Mean cross-entropy over the tokens that are not padding."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=PAD_LABEL)


@BUILD_MODEL_REGISTRY.register()
class PaddedLMMeanOfMeans(BaseModel):
    seen = ()  # what DumpTrainer records of the samples seen (not needed here)

    def run_step(self, data, *, epoch=None, **kwargs):
        logits = self.g_model(data["input"].to(self.device))
        return ByteBigramLM.loss_fn(logits, data["label"].to(self.device))

    def generator(self, data):
        return self.g_model(data.to(self.device))


@BUILD_MODEL_REGISTRY.register()
class PaddedLM(PaddedLMMeanOfMeans):
    def num_items(self, data):
        return (data["label"] != PAD_LABEL).sum()
