"""Loading pretrained weights (``trainer.weights``) into a network."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict

import torch

from engine.errors import ConfigError

logger = logging.getLogger("engine")


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """A plain state dict from ``.pt``/``.pth``/``.bin`` (torch) or ``.safetensors``.

    Files exported by ``tools/convert_ckpt.py`` and torch checkpoints that nest the weights
    under ``state_dict``/``model``/``module`` are unwrapped.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"trainer.weights: file not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"trainer.weights: {path} holds {type(state).__name__}, not a state dict")
    return state


def load_weights(network: torch.nn.Module, path: str, *, strict: bool = False) -> Any:
    """Load ``path`` into ``network`` and log missing/unexpected keys."""
    result = network.load_state_dict(read_state_dict(path), strict=strict)
    logger.info(f"loaded weights from {path}: {len(result.missing_keys)} missing, "
                f"{len(result.unexpected_keys)} unexpected keys")
    for kind in ("missing_keys", "unexpected_keys"):
        keys = getattr(result, kind)
        if keys:
            logger.warning(f"  {kind.replace('_', ' ')}: {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}")
    return result
