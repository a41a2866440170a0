"""Building a network under ZeRO-3 without ever holding all of it on one rank.

Why: a plain ``nn.Module(...)`` allocates every parameter in full on every rank, and only
``deepspeed.initialize`` partitions them afterwards, so the peak host/device memory of the
build is the whole model per rank, which is exactly what ZeRO-3 exists to avoid. Inside
``deepspeed.zero.Init`` each parameter is partitioned the moment its module's ``__init__``
returns: a rank holds ``ds_numel / world_size`` elements of it (``p.ds_tensor``) and the
full tensor is gathered only for the forward/backward of the module that uses it.

What does not survive: an initialisation pass that runs once submodules are built and
writes parameters they hold, outside what DeepSpeed gathers. zero.Init wraps ``Module.apply``
to gather the visited module's own parameters, so ``self.apply(init)`` works only while
``init`` touches nothing else; a parent setting a child's weight (GPT-2's scaled residual
init), a traversal of its own (Hugging Face's ``initialize_weights``) or an init after
construction writes into empty partitions and is silently lost. ``apply_gathered`` is the
pass made safe.

Pretrained weights (``trainer.weights``) then go in module by module through
``engine.weights.pretrained.load_weights``, which gathers one module, lets rank 0 copy and
re-partitions it: peak memory is one module's full weights, not the model's.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, List, Mapping

from torch import nn

from engine.runplan.ds_config import zero_stage


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
    import torch._dynamo  # noqa: F401  (see below)

    # zero.Init replaces torch.Tensor.__new__ while it is open; torch._dynamo, imported for the
    # first time inside it (transformers 5 does so lazily when a model class is first used),
    # checks that signature and fails: "TypeError: Signature mismatch ... tensor_pynew".
    # Imported here first, it sees torch's own.
    return deepspeed.zero.Init(config_dict_or_path=dict(ds_config))


def is_partitioned(network: Any) -> bool:
    """True when the network's parameters are ZeRO-3 partitioned (built under zero.Init or wrapped)."""
    return any(hasattr(p, "ds_id") for p in network.parameters())


def apply_gathered(network: nn.Module, fn: Callable[[nn.Module], Any], *, depth: int = 1) -> nn.Module:
    """``network.apply(fn)`` that also works when the parameters are ZeRO-3 partitions.

    Modules are visited in ``nn.Module.apply``'s order (children first). Under zero.Init each
    module's own parameters and those of its descendants ``depth`` levels down are gathered
    while ``fn`` runs (``fn`` often sets a child's weight, as GPT-2's scaled ``c_proj`` init
    does), and rank 0's values are kept on every rank, so the weights equal those of the same
    seed built without zero.Init. Peak memory is the largest such group, not the model.
    Without partitioned parameters it is plain ``network.apply(fn)``.
    """
    if not is_partitioned(network):
        return network.apply(fn)
    import deepspeed

    def visit(module: nn.Module) -> None:
        for child in module.children():
            visit(child)
        with deepspeed.zero.GatheredParameters(_parameters_within(module, depth), modifier_rank=0):
            fn(module)

    visit(network)
    return network


def _parameters_within(module: nn.Module, depth: int) -> List[nn.Parameter]:
    params = list(module.parameters(recurse=False))
    if depth > 0:
        for child in module.children():
            params.extend(_parameters_within(child, depth - 1))
    return list({id(p): p for p in params}.values())  # a tied parameter once
