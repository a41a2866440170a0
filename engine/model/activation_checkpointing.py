"""Activation checkpointing of the blocks a network declares, switched on from the config.

Why: a deep network's activations, kept for backward, often outweigh its parameters; a
checkpointed block keeps only its inputs and recomputes its forward during backward
(one extra forward per block, activation memory of one block instead of all of them).

The protocol (a network opts in; nothing is guessed):

    class GPT(nn.Module):
        checkpoint_blocks = ("blocks",)        # or a method returning the names

Each name is a submodule path (``get_submodule``); a ``ModuleList``/``Sequential`` stands
for each of its children. Switches: ``trainer.model.activation_checkpointing = True`` uses
``torch.utils.checkpoint.checkpoint(use_reentrant=False)``; a ``deepspeed.activation_checkpointing``
section (``partition_activations``, ``cpu_checkpointing``, ...) turns it on too and uses
DeepSpeed's (reentrant) checkpoint configured from that section; a block none of whose
inputs needs a gradient then runs without checkpointing (reentrant recomputation would
leave its parameters without gradients).

The wrap replaces the block's ``forward`` on the instance, so parameter names, state dicts,
checkpoints and exports are unchanged, and module hooks (ZeRO-3 gathers) still run.
Both recompute with the forward's RNG state, so dropout masks match.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, List, Mapping, Optional

import torch

from engine.errors import EngineError

logger = logging.getLogger("engine")


def declared_blocks(network: torch.nn.Module) -> List[str]:
    """The submodule paths to checkpoint, containers expanded to their children."""
    names = getattr(network, "checkpoint_blocks", None)
    if callable(names):
        names = names()
    if not names:
        raise EngineError(
            f"activation checkpointing is on (trainer.model.activation_checkpointing or deepspeed.activation_checkpointing), "
            f"but {type(network).__name__} declares no blocks: give it checkpoint_blocks = ('<submodule name>', ...)")
    paths = []
    for name in ([names] if isinstance(names, str) else names):
        try:
            module = network.get_submodule(name)
        except AttributeError:
            raise EngineError(f"{type(network).__name__}.checkpoint_blocks names {name!r}, which is not a submodule") from None
        if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)):
            paths.extend(f"{name}.{child}" for child, _ in module.named_children())
        else:
            paths.append(name)
    return paths


def checkpoint_function(ds_section: Optional[Mapping[str, Any]]) -> Callable[..., Any]:
    """``fn(forward, *args, **kwargs)`` that runs ``forward`` without keeping its activations."""
    if ds_section is None:
        from torch.utils.checkpoint import checkpoint

        return functools.partial(checkpoint, use_reentrant=False)
    from deepspeed import checkpointing

    checkpointing.configure(
        None,
        partition_activations=bool(ds_section.get("partition_activations", False)),
        contiguous_checkpointing=bool(ds_section.get("contiguous_memory_optimization", False)),
        num_checkpoints=ds_section.get("number_checkpoints"),
        checkpoint_in_cpu=bool(ds_section.get("cpu_checkpointing", False)),
        synchronize=bool(ds_section.get("synchronize_checkpoint_boundary", False)),
        profile=bool(ds_section.get("profile", False)),
    )

    def run(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # DeepSpeed's reentrant checkpoint: its non-reentrant one lost ZeRO-3's gathered weights
        # in the recompute here (a size-0 weight in backward). Reentrant gives the block's
        # parameters no gradient when no input needs one, so such a block runs plainly.
        if not any(isinstance(a, torch.Tensor) and a.requires_grad for a in (*args, *kwargs.values())):
            return forward(*args, **kwargs)
        bound = functools.partial(forward, **kwargs) if kwargs else forward
        return checkpointing.checkpoint(bound, *args)

    return run


def apply_activation_checkpointing(network: torch.nn.Module, ds_section: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Make every declared block of ``network`` recompute its forward in backward.

    Args:
        network: a module with ``checkpoint_blocks``.
        ds_section: the DeepSpeed ``activation_checkpointing`` section, or None for torch's.

    Returns:
        The paths of the wrapped blocks (for the start-of-run log).
    """
    run = checkpoint_function(ds_section)
    paths = declared_blocks(network)
    for path in paths:
        block = network.get_submodule(path)
        original = block.forward

        def forward(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            if not torch.is_grad_enabled():  # inference: nothing to save, nothing to recompute
                return _original(*args, **kwargs)
            return run(_original, *args, **kwargs)

        block.forward = forward
    logger.info(f"activation checkpointing ({'torch' if ds_section is None else 'deepspeed'}): "
                f"{len(paths)} blocks: {', '.join(paths)}")
    return paths


def activation_checkpointing_requested(switch: bool, ds_config: Mapping[str, Any]) -> bool:
    """On with the engine key or with a ``deepspeed.activation_checkpointing`` section."""
    return bool(switch) or "activation_checkpointing" in ds_config
