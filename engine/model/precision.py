"""The dtype a run computes in, inputs moved and cast to it, and the BatchNorm buffers half precision leaves behind.

DeepSpeed 0.19 casts only parameters to fp16/bf16 and keeps buffers in their own dtype
(``data_types.buffer_dtype`` unset; ZeRO-3's ``zero.Init`` is the exception, it casts
everything). BatchNorm with half weights and fp32 running statistics then fails, measured
with the digits example at ZeRO 1-2: fp16 on an H200 in backward (``Expected running_mean
to have type Half but got Float``), bf16 on CPU in forward (``expected scalar type BFloat16
but found Float``). Casting the running statistics with their weights, as DeepSpeed's older
blanket ``module.half()`` did, makes CNNs train in half precision out of the box.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import nn

from engine.runplan.ds_config import precision_name


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def compute_dtype(ds_config: Mapping[str, Any]) -> torch.dtype:
    """bf16 or fp16 when the DeepSpeed config enables it, else fp32."""
    return _DTYPES[precision_name(ds_config)]


def to_device(value: Any, device: torch.device, dtype: Optional[torch.dtype]) -> Any:
    """``value`` (a tensor, or a list/tuple/dict of them) on ``device``; floating tensors cast to ``dtype`` if given.

    DeepSpeed casts the network to bf16/fp16 but not its inputs (only fp16's ``auto_cast``
    does), so a float batch fed as is fails with "Input type (float) and bias type
    (c10::BFloat16) should be the same". Integer tensors (labels, token ids) keep their dtype.
    """
    if isinstance(value, torch.Tensor):
        cast = dtype if dtype is not None and value.is_floating_point() else None
        return value.to(device, dtype=cast, non_blocking=True)
    if isinstance(value, Mapping):
        return {k: to_device(v, device, dtype) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [to_device(v, device, dtype) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)  # a namedtuple takes fields
    return value


def align_norm_buffers(module: nn.Module, ds_config: Mapping[str, Any]) -> int:
    """Under fp16/bf16, cast BatchNorm running statistics to that dtype; return how many buffers changed.

    Nothing is done when the user chose ``data_types.buffer_dtype`` (DeepSpeed then casts
    every buffer itself) or the run is fp32. ``num_batches_tracked`` stays an integer.
    """
    dtype = compute_dtype(ds_config)
    if dtype is torch.float32 or (ds_config.get("data_types") or {}).get("buffer_dtype"):
        return 0
    changed = 0
    for norm in module.modules():
        if not isinstance(norm, nn.modules.batchnorm._BatchNorm):
            continue
        for name in ("running_mean", "running_var"):
            buffer = getattr(norm, name, None)
            if buffer is not None and buffer.dtype != dtype:
                buffer.data = buffer.data.to(dtype)
                changed += 1
    return changed
