"""One network + its optimizer + its LR scheduler → one DeepSpeed engine.

The only place (with the GAN bundle that reuses it) that calls ``deepspeed.initialize``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch

from engine.runplan.ds_config import uses_client_optimizer
from engine.model.precision import align_norm_buffers
from engine.solver import build_optimizer, lr_scheduler_factory


@dataclass
class WrappedNetwork:
    """What ``deepspeed.initialize`` hands back, named."""

    engine: Any  # deepspeed.DeepSpeedEngine
    optimizer: Any
    lr_scheduler: Optional[Any]


def wrap_network(network: torch.nn.Module, solver: Mapping[str, Any], ds_config: Mapping[str, Any],
                 *, where: str, max_iter: int) -> WrappedNetwork:
    """Build the optimizer/scheduler that ``solver`` describes and initialise a DeepSpeed engine.

    Args:
        network: the user's module.
        solver: ``solver.generator``-shaped config (optimizer, lr_scheduler, clip_gradients).
        ds_config: this engine's DeepSpeed config from the run plan (``RunPlan.ds_config``).
        where: config path of ``solver``, named in errors.
        max_iter: optimizer steps of the whole run, for schedulers whose params leave it out.
    """
    import deepspeed

    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = None
    if uses_client_optimizer(ds_config):
        optimizer = build_optimizer(solver["optimizer"], trainable, where=f"{where}.optimizer")
    # a callable (or None): DeepSpeed calls it with the optimizer it built, its own or ours
    make_scheduler = lr_scheduler_factory(solver["lr_scheduler"], where=f"{where}.lr_scheduler",
                                          defaults={"max_iter": max_iter})

    engine, ds_optimizer, _, lr_scheduler = deepspeed.initialize(
        model=network,
        model_parameters=trainable,
        optimizer=optimizer,
        lr_scheduler=make_scheduler,
        config=dict(ds_config),  # as the run plan wrote it: ds_config.json is what ran
        dist_init_required=False,
    )
    align_norm_buffers(engine.module, ds_config)  # fp16/bf16: BatchNorm running stats in the weights' dtype
    return WrappedNetwork(engine, ds_optimizer, lr_scheduler)


def clip_grad_value_(engine: Any, clip_value: float) -> None:
    """Clamp every gradient element to ±clip_value wherever ZeRO keeps it (stages 0-3).

    Call between ``backward`` and ``step`` at an accumulation boundary: the clamp then acts
    on the accumulated, reduced gradient, as ``clip_grad_value_`` would without DeepSpeed.
    Element-wise clamping of a shard equals clamping the whole, so no gather is needed.
    """
    from deepspeed.utils import safe_get_local_grad, safe_set_local_grad, safe_update_full_grad_vectorized

    params = [p for p in engine.module.parameters() if p.requires_grad]
    partitioned = [p for p in params if hasattr(p, "ds_id")]
    # ZeRO-3: clamp each rank's own shard. DeepSpeed's vectorized full-gradient update fails
    # on parameters whose size does not divide by the world size (a 3-element bias on 2 ranks).
    for param in partitioned:
        grad = safe_get_local_grad(param)
        if grad is not None:
            safe_set_local_grad(param, grad.clamp(-clip_value, clip_value))
    others = [p for p in params if not hasattr(p, "ds_id")]
    if others:
        safe_update_full_grad_vectorized(others, lambda grad, _param: grad.clamp(-clip_value, clip_value))


@dataclass
class StepOutcome:
    """What one ``backward_step`` did: whether it ended an accumulation cycle, and whether the
    optimizer update was skipped because gradients were not finite (NaN/inf loss)."""

    boundary: bool
    skipped: bool


def backward_step(engine: Any, loss: torch.Tensor, clip: Mapping[str, Any]) -> StepOutcome:
    """backward → (value clip at the boundary) → step, skipping updates from non-finite gradients.

    ZeRO 1-3 optimizers already refuse a step whose gradients hold NaN/inf (consistently on
    every rank, counted in ``engine.skipped_steps``). At ZeRO-0 nothing would stop it, so the
    gradients are checked here (they are all-reduced, hence the same on every rank) and
    dropped: torch optimizers leave parameters without a gradient untouched. Under fp16 a
    skipped step is DeepSpeed's loss scaling at work, not a bad loss, and is not reported.
    """
    engine.backward(loss)
    boundary = engine.is_gradient_accumulation_boundary()  # read before step() advances it
    dropped = False
    if boundary:
        if clip["enabled"] and clip["clip_type"] == "value":
            clip_grad_value_(engine, float(clip["clip_value"]))
        if engine.zero_optimization_stage() == 0 and not engine.fp16_enabled():
            dropped = _drop_nonfinite_grads(engine)
    skipped_before = engine.skipped_steps
    engine.step()
    skipped = dropped or (boundary and not engine.fp16_enabled() and engine.skipped_steps > skipped_before)
    return StepOutcome(boundary, skipped)


def _drop_nonfinite_grads(engine: Any) -> bool:
    grads = [p.grad for p in engine.module.parameters() if p.grad is not None]
    if not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):  # one sync per step
        return False
    for param in engine.module.parameters():
        param.grad = None
    return True
