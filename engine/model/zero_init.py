"""Building a network under ZeRO-3 without ever holding all of it on one rank.

Why: a plain ``nn.Module(...)`` allocates every parameter in full on every rank, and only
``deepspeed.initialize`` partitions them afterwards, so the peak host/device memory of the
build is the whole model per rank, which is exactly what ZeRO-3 exists to avoid. Inside
``deepspeed.zero.Init`` each parameter is partitioned the moment its module's ``__init__``
returns: a rank holds ``ds_numel / world_size`` elements of it (``p.ds_tensor``) and the
full tensor is gathered only for the forward/backward of the module that uses it.

Pretrained weights (``trainer.weights``) then go in module by module through
``engine.checkpoint.weights.load_weights``, which gathers one module, lets rank 0 copy and
re-partitions it: peak memory is one module's full weights, not the model's.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Mapping


def zero_stage(ds_config: Mapping[str, Any]) -> int:
    """The ZeRO stage of a derived DeepSpeed config (0 when unset)."""
    return int((ds_config.get("zero_optimization") or {}).get("stage", 0))


def zero_init_enabled(ds_config: Mapping[str, Any], switch: bool) -> bool:
    """Whether networks are built inside ``deepspeed.zero.Init``: stage 3 and ``deepspeed.zero_init``."""
    return bool(switch) and zero_stage(ds_config) == 3


def construction_context(ds_config: Mapping[str, Any], switch: bool) -> ContextManager[Any]:
    """The block to build networks in: ``zero.Init`` under ZeRO-3 (when switched on), else nothing.

    Args:
        ds_config: the derived DeepSpeed config; zero.Init reads the offload (``offload_param``
            → ``remote_device``) and precision settings from it, so parameters are born where
            and as the engine will keep them.
        switch: ``deepspeed.zero_init`` from the framework config.
    """
    if not zero_init_enabled(ds_config, switch):
        return contextlib.nullcontext()
    import deepspeed

    from engine.model.tensor_parallel import without_tp_batch_size

    return deepspeed.zero.Init(config_dict_or_path=without_tp_batch_size(ds_config))


def is_partitioned(network: Any) -> bool:
    """True when the network's parameters are ZeRO-3 partitioned (built under zero.Init or wrapped)."""
    return any(hasattr(p, "ds_id") for p in network.parameters())
