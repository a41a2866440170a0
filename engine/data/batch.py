"""What a collated batch holds, read without knowing its structure."""

from __future__ import annotations

from typing import Any, Mapping

import torch


def batch_size(batch: Any) -> int:
    """Samples in a collated batch: the leading size of its first tensor (1 if it holds none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    children = list(batch.values()) if isinstance(batch, Mapping) else list(batch) if isinstance(batch, (list, tuple)) else []
    tensors = [c for c in children if isinstance(c, torch.Tensor)]
    nested = [c for c in children if isinstance(c, (Mapping, list, tuple))]
    return batch_size(tensors[0]) if tensors else batch_size(nested[0]) if nested else 1
