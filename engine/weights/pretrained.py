"""Loading pretrained weights (``trainer.weights``) into a network."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace
from typing import Any, Dict

import torch

from engine.weights import safe_load
from engine.errors import ConfigError
from engine.weights.exported import read_exported
from engine import comm

logger = logging.getLogger("engine")


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """A plain state dict from ``.pt``/``.pth``/``.bin`` (torch), ``.safetensors`` or a sharded ``*.index.json``.

    Read with ``weights_only=True`` (``engine.weights.safe_load``): a file holding other objects is
    refused unless the user passed ``--trust-checkpoint``. Files exported by ``tools/convert_ckpt.py`` (one file or shards, tied names restored) and
    torch checkpoints that nest the weights under ``state_dict``/``model``/``module`` are unwrapped.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"trainer.weights: file not found: {path}")
    if path.endswith((".safetensors", ".index.json")):
        return read_exported(path)  # tied names written once by convert_ckpt.py come back here
    state = safe_load.load(path)
    if isinstance(state, dict) and set(state) == {"state_dict", "meta"}:
        return read_exported(path)  # a .pt written by convert_ckpt.py
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"trainer.weights: {path} holds {type(state).__name__}, not a state dict")
    return state


def load_weights(target: Any, path: str, *, strict: bool = False) -> Any:
    """Load ``path`` into a network or a DeepSpeed engine; log missing/unexpected keys.

    Why an engine rather than its module: at ZeRO 1-2 the optimizer keeps its own fp32 copy
    of the weights, made at ``deepspeed.initialize``; without ``refresh_fp32_params`` the
    first step would put the random initial weights back. At ZeRO-3 each rank holds a
    shard only, so parameters are gathered per module and rank 0's copy is scattered.
    """
    return load_state(target, read_state_dict(path), strict=strict, source=path)


def load_state(target: Any, state: Dict[str, torch.Tensor], *, strict: bool = False, source: str = "state dict") -> Any:
    """Load a whole (unsharded) state dict into a network or DeepSpeed engine, as ``load_weights`` does.

    Args:
        target: a network, or the engine that wraps it (then the optimizer's fp32 copy follows).
        state: parameter and buffer tensors by name.
        strict: fail when keys are missing or unexpected.
        source: where ``state`` came from, named in messages.
    """
    network = getattr(target, "module", target)
    expected = set(network.state_dict().keys())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if strict and (missing or unexpected):
        raise ConfigError(f"trainer.weights: {source} does not match the network (trainer.weights_strict): "
                          f"missing {missing[:20]}, unexpected {unexpected[:20]}")
    if _is_zero3(network):
        _load_zero3(network, state)
    else:
        result = network.load_state_dict(state, strict=False)
        missing, unexpected = sorted(result.missing_keys), sorted(result.unexpected_keys)
    optimizer = getattr(target, "optimizer", None)
    if optimizer is not None and hasattr(optimizer, "refresh_fp32_params"):
        optimizer.refresh_fp32_params()
    logger.info(f"loaded weights from {source}: {len(missing)} missing, {len(unexpected)} unexpected keys")
    for kind, keys in (("missing keys", missing), ("unexpected keys", unexpected)):
        if keys:
            logger.warning(f"  {kind}: {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}")
    return SimpleNamespace(missing_keys=missing, unexpected_keys=unexpected)


def _is_zero3(network: torch.nn.Module) -> bool:
    return any(hasattr(p, "ds_id") for p in network.parameters())


def _load_zero3(network: torch.nn.Module, state: Dict[str, torch.Tensor]) -> None:
    """One module at a time, so peak memory is one module's full weights, not the model's."""
    import deepspeed

    for prefix, module in network.named_modules():
        params = list(module.parameters(recurse=False))
        prefix = f"{prefix}." if prefix else ""
        with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
            if comm.get_rank() == 0:
                for name, param in module.named_parameters(recurse=False):
                    if prefix + name in state:
                        _copy(param, state[prefix + name], prefix + name)
        for name, buf in module.named_buffers(recurse=False):
            if buf is not None and prefix + name in state:
                _copy(buf, state[prefix + name], prefix + name)


def _copy(dest: torch.Tensor, src: torch.Tensor, key: str) -> None:
    if tuple(dest.shape) != tuple(src.shape):
        raise ConfigError(f"trainer.weights: {key} has shape {tuple(src.shape)}, the network expects {tuple(dest.shape)}")
    with torch.no_grad():
        dest.copy_(src.to(dtype=dest.dtype, device=dest.device))
