"""Reading the files ``tools/convert_ckpt.py`` exports: one file or a sharded ``*.index.json``, tied names restored.

It sits in ``engine.weights`` (under model/ and checkpoint/) because loading pretrained weights
(``trainer.weights``) reads the same files; the writer is ``engine.checkpoint.export``.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterator, Tuple

import torch

from engine.weights import safe_load


def _read_one(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    if path.endswith(".safetensors"):
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(path), meta
    obj = safe_load.load(path)
    return obj["state_dict"], obj.get("meta", {})


def iter_exported(path: str) -> Iterator[Tuple[str, torch.Tensor]]:
    """(name, tensor) of an export, one file at a time (an index walks its shards in order)."""
    if path.endswith(".index.json"):
        with open(path, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        folder = os.path.dirname(os.path.abspath(path))
        for shard in dict.fromkeys(weight_map.values()):
            yield from _read_one(os.path.join(folder, shard))[0].items()
    else:
        yield from _read_one(path)[0].items()


def read_exported(path: str) -> Dict[str, torch.Tensor]:
    """The whole state dict of an export (file or ``*.index.json``), tied names restored."""
    if path.endswith(".index.json"):
        with open(path, encoding="utf-8") as f:
            tied = json.load(f)["metadata"].get("tied", {})
        state = dict(iter_exported(path))
    else:
        state, meta = _read_one(path)
        tied = json.loads(meta.get("tied", "{}"))
    for alias, name in tied.items():
        state[alias] = state[name]
    return state
