"""Checks that relate several framework keys; run after each key was validated alone."""

from __future__ import annotations

from typing import Any, Dict

from engine.errors import ConfigError


def check_consistency(cfg: Dict[str, Any]) -> None:
    """Reject combinations that no run could honour, naming every key involved."""
    solver = cfg["solver"]
    accumulation = max(1, solver["gradient_accumulation_batch"])
    if solver["train_per_batch"] % accumulation:
        raise ConfigError(
            f"solver.train_per_batch = {solver['train_per_batch']} is not divisible by "
            f"solver.gradient_accumulation_batch = {solver['gradient_accumulation_batch']}: "
            "the micro batch is train_per_batch // gradient_accumulation_batch"
        )
    if not cfg["trainer"]["model"]["name"]:
        raise ConfigError("trainer.model.name: required: the model class registered in BUILD_MODEL_REGISTRY")
    if cfg["dataloader"]["train_data_set"] is None:
        raise ConfigError("dataloader.train_data_set: required: dict(name=<registered dataset>, ...)")
    if solver["ema"]["enabled"]:
        raise ConfigError("solver.ema.enabled (or trainer.model.ema.enable) = True: EMA is not implemented yet; "
                          "set it to False")
    for path, value in (("trainer.model.discriminator", cfg["trainer"]["model"]["discriminator"]),
                        ("solver.discriminator", solver["discriminator"])):
        if value:
            raise ConfigError(f"{path}: the GAN bundle (discriminators) is not implemented yet; remove this key")
    clip = solver["generator"]["clip_gradients"]
    if clip["enabled"] and clip["clip_type"] == "norm" and clip["norm_type"] != 2.0:
        raise ConfigError(
            f"solver.generator.clip_gradients.norm_type = {clip['norm_type']}: DeepSpeed clips the 2-norm only; "
            "use 2.0, or clip_type='value'"
        )
