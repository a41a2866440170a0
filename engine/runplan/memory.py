"""Model-state memory per rank for a run plan: parameters, gradients, optimizer states, EMA.

Why engine's own per-category figure beside DeepSpeed's estimators: DeepSpeed's
``estimate_zero2_model_states_mem_needs`` / ``estimate_zero3_model_states_mem_needs``
assume fp16 weights with an fp32 master copy and Adam, at every precision, and have no
ZeRO-0 or ZeRO-1 variant; in fp32 or bf16, or with SGD, they are off by 20-40 %. The
figure here counts what DeepSpeed 0.19 actually keeps, per category, as
``benchmarks/zero_memory.py`` measures it (within 1 % there for Adam at ZeRO 0-3, fp32
and bf16); DeepSpeed's own estimate is reported next to it for stages 1-3.

Bytes per parameter per rank, N = data-parallel size, h = 2 for bf16/fp16 and 4 for fp32,
m = optimizer state bytes (8 for Adam's two fp32 moments, 4 for SGD with momentum):

=====  ==========  ==========  =====================================
stage  parameters  gradients   optimizer (fp32 master + moments)
=====  ==========  ==========  =====================================
0      h           h           (4 if h == 2 else 0) + m
1, 2   h           h / N       (4 + m) / N
3      h / N       h / N       (4 + m) / N
=====  ==========  ==========  =====================================

At ZeRO-1 DeepSpeed keeps only the partition's gradients after backward, as at ZeRO-2; in
fp32 the ZeRO 1-3 optimizers still clone an fp32 master partition beside the fp32 weights.
Tensor and pipeline parallel divide a replica's parameters among their ranks (evenly, as
an estimate). Offloaded optimizer states (and ZeRO-3 parameters) sit in host memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Mapping, Optional

from engine.runplan.plan import RunPlan

#: fp32 bytes of optimizer state per parameter, by lower-case optimizer type (Adam-like: 2 moments)
_STATE_BYTES = {"sgd": 0, "adagrad": 4, "rmsprop": 4, "adadelta": 8, "lion": 4, "adafactor": 4}
_ADAM_STATE = 8


@dataclass(frozen=True)
class NetworkSize:
    """Parameter counts of one network (from a meta-device build: no memory, no weights).

    Args:
        params: trainable parameters.
        largest_layer: parameters of the module with the most direct parameters (ZeRO-3 gathers one at a time).
    """

    params: int
    largest_layer: int


@dataclass(frozen=True)
class ModelStateMemory:
    """Bytes one rank holds for one engine."""

    params: int
    grads: int
    optimizer: int
    ema: int
    host: int  # offloaded to CPU memory (or NVMe), not on the device
    deepspeed_estimate: Optional[Dict[str, int]]  # DeepSpeed's estimator: {"device": ..., "host": ...}

    @property
    def device_total(self) -> int:
        return self.params + self.grads + self.optimizer + self.ema

    def to_json(self) -> Dict[str, Any]:
        return dict(asdict(self), device_total=self.device_total)


def optimizer_state_bytes(ds: Mapping[str, Any], optimizer: Mapping[str, Any]) -> int:
    """fp32 bytes per parameter the optimizer keeps (momentum, variance, ...)."""
    kind = str((ds.get("optimizer") or {}).get("type") or optimizer.get("type", "Adam")).lower()
    params = dict((ds.get("optimizer") or {}).get("params") or optimizer.get("params") or {})
    if kind == "sgd":
        return 4 if float(params.get("momentum", 0) or 0) else 0
    return _STATE_BYTES.get(kind, _ADAM_STATE)


def model_state_memory(plan: RunPlan, engine: str, size: NetworkSize, optimizer: Mapping[str, Any],
                       ema: bool = False) -> ModelStateMemory:
    """Per-rank model-state bytes of ``engine`` under ``plan`` (see the module doc for the formula).

    Args:
        plan: the run plan (ZeRO stage, precision, offload, parallel sizes).
        engine: the engine's name in the plan.
        size: the engine's network size.
        optimizer: the engine's ``solver.*.optimizer`` section (client optimizers are not in the ds_config).
        ema: whether an EMA of the weights is kept (fp32; sharded at ZeRO-3).
    """
    ds = plan.ds_config(engine)
    layout = plan.layout
    psi = size.params / max(1, layout.tensor_parallel_size * layout.pipeline_stages)
    n = max(1, layout.data_parallel_size)
    h = 4 if plan.precision == "fp32" else 2
    m = optimizer_state_bytes(ds, optimizer)
    stage = plan.zero_stage
    if stage == 0:
        per = (h, h, (4 if h == 2 else 0) + m)
    elif stage in (1, 2):
        per = (h, h / n, (4 + m) / n)
    else:
        per = (h / n, h / n, (4 + m) / n)
    params, grads, optim = (int(round(b * psi)) for b in per)
    ema_bytes = int(round(4 * psi / (n if stage == 3 else 1))) if ema else 0
    host = 0
    if plan.offload_optimizer != "none":
        host, optim = optim, 0
    if stage == 3 and plan.offload_param != "none":
        host, params = host + params, 0
    return ModelStateMemory(params, grads, optim, ema_bytes, host, _deepspeed_estimate(plan, psi, size))


def _deepspeed_estimate(plan: RunPlan, psi: float, size: NetworkSize) -> Optional[Dict[str, int]]:
    """DeepSpeed's own estimator for the stage and offload in use (stages 1-3; stage 1 uses stage 2's)."""
    if plan.zero_stage == 0:
        return None
    # DeepSpeed's ZeRO modules import torch and DeepSpeed (seconds): only ``engine plan`` needs them
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    layout = plan.layout
    nodes = max(1, layout.nodes)
    per_node = max(1, layout.data_parallel_size // nodes)
    offload = plan.offload_optimizer != "none"
    if plan.zero_stage == 3:
        host, device, _largest_layer_bytes = estimate_zero3_model_states_mem_needs(
            int(psi), size.largest_layer, num_gpus_per_node=per_node, num_nodes=nodes, cpu_offload=offload,
            cpu_offload_params=plan.offload_param != "none", zero_init=True, additional_buffer_factor=1.0)
    else:
        host, device = estimate_zero2_model_states_mem_needs(
            int(psi), num_gpus_per_node=per_node, num_nodes=nodes, cpu_offload=offload, additional_buffer_factor=1.0)
    return {"device": int(device), "host": int(host)}
