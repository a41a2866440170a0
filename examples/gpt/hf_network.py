"""A user's existing Hugging Face model as an engine network: GPT-2 built from a config, no download.

Registering a thin wrapper is all it takes: ``forward(ids) -> logits`` matches what the
example's model bundle expects, so the same configs (ZeRO stages, offload) run it. Under
ZeRO-3 it is built inside ``deepspeed.zero.Init``; transformers' weight-init pass (its own
traversal, which DeepSpeed does not gather for) is then redone with ``apply_gathered``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.model.build import BUILD_NETWORK_REGISTRY
from engine.model.zero_init import apply_gathered, is_partitioned


@BUILD_NETWORK_REGISTRY.register()
class HFCausalLM(nn.Module):
    """``transformers.GPT2LMHeadModel`` from ``GPT2Config(**config)``: random weights, nothing fetched.

    Args:
        config: GPT2Config keyword arguments (vocab_size, n_positions, n_embd, n_layer, n_head, ...).
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        try:
            from transformers import GPT2Config, GPT2LMHeadModel
        except ImportError as exc:  # optional dependency of the example only
            raise ImportError("HFCausalLM needs the transformers package: pip install transformers") from exc
        config.setdefault("bos_token_id", None)  # GPT-2's defaults point past a byte vocabulary
        config.setdefault("eos_token_id", None)
        self.model = GPT2LMHeadModel(GPT2Config(**config))
        if is_partitioned(self.model):
            # under zero.Init transformers' own init pass wrote into empty partitions; run it again gathered
            apply_gathered(self.model, self.model._init_weights)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits
