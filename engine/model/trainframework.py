"""TrainFramework's model-bundle members that its user trainers call, on engine's DeepSpeed bundle.

Seed trainers evaluate with ``self.model.disable_train(); out = self.model(batch)`` and move
weights with ``get_state_dict`` / ``load_state_dict`` and optimizer state with
``get_addition_state_dict`` / ``load_addition_state_dict``. ``BaseModel`` inherits these;
engine's own checkpoints (``--resume``) do not go through them.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Mapping, Optional

import yaml

from engine.weights.pretrained import load_state
from engine.config.node import to_plain
from engine.errors import EngineError
from engine.model.tensor_parallel import gathered_state_dict


class TrainFrameworkModelSurface:
    """Mixin of ``BaseModel``: ``__call__``, the seed's state-dict methods and names.

    Expects ``g_model`` (a DeepSpeed engine), ``g_optimizer``, ``g_lr_scheduler``, ``ema``,
    ``cfg``, ``train_micro_step`` and ``generator`` from the bundle.
    """

    #: the seed's attribute name of the EMA (``getattr(model, model.EMA_KEY)``)
    EMA_KEY = "ema"

    def __call__(self, data: Any, *, epoch: Any = None, **kwargs: Any) -> Any:
        """The seed's entry: a training micro-step in train mode, ``generator(data)`` otherwise.

        After ``disable_train()`` the generator runs in eval mode, on the EMA weights when
        EMA is on (``disable_train`` swaps them in). In train mode it returns what the step
        logs (``loss`` and the other scalars, detached tensors); the seed's extra keyword
        arguments (``data_epoch``, ``accumulation_epoch``) are accepted and not needed:
        engine's DeepSpeed engine counts the accumulation itself.
        """
        if self.g_model.training:  # enable_train / disable_train keep the engine's flag right
            result = self.train_micro_step(data, epoch=epoch)
            return getattr(result, "outputs", result)  # a StepResult's outputs; an older override's dict
        return self.generator(data)

    @property
    def g_scheduler(self) -> Optional[Any]:
        """The seed's name of ``g_lr_scheduler`` (None when ``lr_scheduler.enabled`` is off)."""
        return self.g_lr_scheduler

    @property
    def default_log_name(self) -> str:
        return self.cfg.OUTPUT_LOG_NAME

    # ---- state dicts ---------------------------------------------------------------------------
    def get_state_dict(self) -> Dict[str, Any]:
        """``{"g_model": whole generator weights, "ema": EMA state}`` (EMA only when on).

        The weights are gathered whole whatever holds them (ZeRO-3 or tensor-parallel
        shards): a collective, so every rank calls it. The EMA state is this rank's.
        """
        state: Dict[str, Any] = {"g_model": gathered_state_dict(self.g_model)}
        if self.ema is not None:
            state[self.EMA_KEY] = self.ema.state_dict()
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load what ``get_state_dict`` returned (or a plain generator state dict under ``g_model``).

        The weights go in through the engine, so ZeRO's fp32 copy and ZeRO-3 shards follow.
        """
        if "g_model" not in state_dict:
            raise EngineError(f"{type(self).__name__}.load_state_dict: expected a dict with 'g_model' (from "
                              f"get_state_dict), got keys {sorted(state_dict)[:10]}")
        load_state(self.g_model, dict(state_dict["g_model"]), source="load_state_dict")
        if self.ema is not None and state_dict.get(self.EMA_KEY) is not None:
            self.ema.load_state_dict(state_dict[self.EMA_KEY])

    def get_addition_state_dict(self) -> Dict[str, Any]:
        """This rank's optimizer and LR-scheduler state and the config (YAML), as in the seed."""
        return {"g_optimizer": self.g_optimizer.state_dict(),
                "g_scheduler": self.g_lr_scheduler.state_dict() if self.g_lr_scheduler is not None else {},
                "cfg": yaml.safe_dump(to_plain(self.cfg), sort_keys=False)}

    def load_addition_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load what ``get_addition_state_dict`` returned on this rank."""
        load_optimizer_state(self.g_optimizer, state_dict["g_optimizer"], "g_optimizer")
        if self.g_lr_scheduler is not None and state_dict.get("g_scheduler"):
            self.g_lr_scheduler.load_state_dict(state_dict["g_scheduler"])


def load_optimizer_state(optimizer: Any, state: Mapping[str, Any], name: str) -> None:
    """``optimizer.load_state_dict(state)``; refused for ZeRO optimizers, whose loading needs every rank's partition.

    A ZeRO optimizer (its ``load_state_dict`` takes ``state_dict_list``) is restored by engine's
    checkpoints (``--resume``), which save and load each rank's partition together.
    """
    if "state_dict_list" in inspect.signature(optimizer.load_state_dict).parameters:
        raise EngineError(f"load_addition_state_dict: {name} is a ZeRO optimizer ({type(optimizer).__name__}) whose "
                          "state is partitioned over ranks; restore it with engine's checkpoints (--resume) instead")
    optimizer.load_state_dict(state)
