"""Tensor parallel through DeepSpeed's AutoTP training, and getting whole weights back out.

Config: ``deepspeed.tensor_parallel = dict(autotp_size=N, partition_config=...)``. DeepSpeed
replaces the matching ``nn.Linear`` layers at ``deepspeed.initialize`` with column-parallel
(output features split, e.g. attention q/k/v, an MLP's up projection) or row-parallel
(input features split, e.g. attention output, an MLP's down projection) layers; N
consecutive ranks hold one model replica and must read the same batches (the trainer's
data-parallel rank sees to it). Hugging Face models DeepSpeed recognises need no
``partition_config``; for any other network either the config gives one, or the network
declares its own (why: the network's author knows which layers pair up):

    class MyNet(nn.Module):
        autotp_layer_specs = [{"patterns": [r".*\\.up\\.weight$"], "partition_type": "column"},
                              {"patterns": [r".*\\.down\\.weight$"], "partition_type": "row"}]

which the run plan puts into ``partition_config`` (``use_default_specs: false``); it also
leaves ``train_batch_size`` out of the DeepSpeed config (engine.runplan.plan says why).

Export: a TP checkpoint holds one shard per TP rank (``mp_rank_XX_model_states.pt``);
``merge_tp_shards`` concatenates them back by the same specs (column: dim 0 of weight and
bias; row: dim 1 of weight, bias replicated). ``gathered_state_dict`` does the same live.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from engine.errors import EngineError
from engine.runplan.ds_config import autotp_size


def check_network_specs(ds_config: Mapping[str, Any], network: torch.nn.Module, where: str) -> None:
    """Refuse a network whose AutoTP specs the run plan could not see.

    The run plan fills ``partition_config`` from the registered network *class*'s
    ``autotp_layer_specs`` before anything is built; a network that sets the specs only on
    the instance (or a ``create_model`` that builds another class) would run without them.
    """
    specs = getattr(network, "autotp_layer_specs", None)
    tp = ds_config.get("tensor_parallel") or {}
    if autotp_size(ds_config) > 1 and specs and "partition_config" not in tp and "preset_model" not in tp:
        raise EngineError(f"{where}: {type(network).__name__}.autotp_layer_specs was not known when the run was "
                          "planned: declare it on the network class registered under that name, or set "
                          "deepspeed.tensor_parallel.partition_config")


def layer_specs(ds_config: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    """The ``layer_specs`` of the run's partition config (empty when DeepSpeed chose by itself)."""
    return list(((ds_config.get("tensor_parallel") or {}).get("partition_config") or {}).get("layer_specs") or [])


def _partition_type(weight_key: str, specs: Sequence[Mapping[str, Any]]) -> Optional[str]:
    for spec in specs:
        if any(re.match(pattern, weight_key) for pattern in spec.get("patterns", [])):
            return str(spec.get("partition_type", "column"))
    return None


def merge_tp_shards(shards: Sequence[Mapping[str, torch.Tensor]],
                    specs: Sequence[Mapping[str, Any]]) -> Dict[str, torch.Tensor]:
    """One whole state dict from the TP ranks' state dicts (in TP-rank order).

    Only plain column/row specs are merged (no ``shape``/sub-parameter splits); a key that
    no spec names is taken from rank 0 (replicated).
    """
    for spec in specs:
        if spec.get("shape") is not None:
            raise ValueError(f"merge_tp_shards: specs with 'shape' (fused sub-parameters) are not supported: {spec}")
    merged: Dict[str, torch.Tensor] = {}
    for key, first in shards[0].items():
        owner = key[: -len(".bias")] + ".weight" if key.endswith(".bias") else key
        kind = _partition_type(owner, specs)
        pieces = [shard[key] for shard in shards]
        if kind == "column":
            merged[key] = torch.cat(pieces, dim=0)
        elif kind == "row" and key.endswith(".weight"):
            merged[key] = torch.cat(pieces, dim=1)
        else:
            merged[key] = first
    return merged


def gathered_state_dict(engine: Any) -> Dict[str, torch.Tensor]:
    """The whole weights of a TP (and/or ZeRO-3) engine on every rank, module by module.

    A collective: every rank must call it. Peak memory is one module's full weights more
    than the shards.
    """
    import deepspeed
    from deepspeed.module_inject.layers import GatherReplacedLayerParams

    tp = int(engine.autotp_size()) > 1 if hasattr(engine, "autotp_size") else False
    state: Dict[str, torch.Tensor] = {}
    for prefix, module in engine.module.named_modules():
        params = list(module.parameters(recurse=False))
        if not params:
            continue
        stage3 = hasattr(params[0], "ds_id")
        with deepspeed.zero.GatheredParameters(params, enabled=stage3):
            with GatherReplacedLayerParams(params, module, enabled=tp):
                for name, param in module.named_parameters(recurse=False):
                    state[f"{prefix}.{name}" if prefix else name] = param.detach().clone().cpu()
    return state
