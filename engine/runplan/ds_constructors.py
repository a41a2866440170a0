"""The optimizer and scheduler DeepSpeed will build, checked against their constructors up front.

``deepspeed.initialize`` builds the ``optimizer`` and ``scheduler`` of its config itself,
after the model exists; a parameter the class does not take (``AdamW`` with ``momentum``)
ends there in a ``TypeError`` and a traceback. Which class it builds depends on the device
and the offload (``DeepSpeedEngine._configure_basic_optimizer`` and
``get_optimizer_configuration`` in ``deepspeed/runtime/engine.py``): torch's Adam with
``torch_adam``, ``DeepSpeedCPUAdam`` when the optimizer is offloaded, ``FusedAdam``
otherwise. ``deepspeed_optimizer_class`` follows the same choice, so the parameters are
bound to the constructor that will really receive them. Torch classes and DeepSpeed's
Python schedulers are also constructed on a throwaway parameter, which checks the values;
DeepSpeed's fused and CPU classes are only bound (constructing them would compile kernels).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

from engine.errors import ConfigError
from engine.utils.quiet import quiet
from engine.utils.registry import check_signature
from engine.utils.suggest import did_you_mean

# params DeepSpeed pops before calling the Adam-family constructor (engine.py)
_ADAM_CONFIG_ONLY = ("adam_w_mode", "torch_adam", "fp32_optimizer_states")


def deepspeed_optimizer_class(ds: Mapping[str, Any]) -> Tuple[Optional[type], Dict[str, Any], Dict[str, Any]]:
    """The class DeepSpeed will build for ``ds["optimizer"]``, the params it passes and those it adds.

    Returns:
        ``(cls, params, added)``; ``cls`` is None for types this check does not model (Muon,
        whose parameter groups DeepSpeed splits itself, and the mup optimizers).
    """
    import torch  # the optimizer classes; torch is loaded by the check anyway

    spec = ds["optimizer"]
    name = str(spec["type"]).lower()
    params = dict(spec.get("params") or {})
    offload = ((ds.get("zero_optimization") or {}).get("offload_optimizer") or {}).get("device", "none")
    on_cpu = str(offload).lower() in ("cpu", "nvme")
    if name in ("adam", "adamw"):
        adam_w_mode = name == "adamw" or bool(params.get("adam_w_mode", True))
        torch_adam = params.get("torch_adam", False)
        fp32_states = params.get("fp32_optimizer_states")
        for key in _ADAM_CONFIG_ONLY:
            params.pop(key, None)
        if torch_adam:
            added = {"foreach": params.pop("foreach", None)}
            return (torch.optim.AdamW if adam_w_mode else torch.optim.Adam), params, added
        if on_cpu:
            from deepspeed.ops.adam import DeepSpeedCPUAdam  # deepspeed is heavy: imported when checking only

            return DeepSpeedCPUAdam, params, {"adamw_mode": adam_w_mode,
                                              "fp32_optimizer_states": True if fp32_states is None else fp32_states}
        from deepspeed.ops.adam import FusedAdam

        return FusedAdam, params, {"adam_w_mode": adam_w_mode}
    if name == "adagrad":
        if on_cpu:
            from deepspeed.ops.adagrad import DeepSpeedCPUAdagrad

            return DeepSpeedCPUAdagrad, params, {}
        return torch.optim.Adagrad, params, {}
    if name == "lamb":
        from deepspeed.ops.lamb import FusedLamb

        return FusedLamb, params, {}
    if name == "lion":
        if on_cpu:
            from deepspeed.ops.lion import DeepSpeedCPULion

            return DeepSpeedCPULion, params, {}
        from deepspeed.ops.lion import FusedLion

        return FusedLion, params, {}
    return None, params, {}


def check_deepspeed_optimizer(ds: Mapping[str, Any], where: str) -> None:
    """Bind ``ds["optimizer"]``'s params to the class DeepSpeed will build (and build torch's).

    Args:
        ds: one engine's DeepSpeed dict.
        where: the config path the optimizer was written at (``solver.generator.optimizer``).

    Raises:
        ConfigError: naming ``where``, the parameter and the accepted names.
    """
    if "optimizer" not in ds:
        return
    import torch

    cls, params, added = deepspeed_optimizer_class(ds)
    if cls is None:
        return
    overlap = sorted(set(params) & set(added))
    if overlap:
        raise ConfigError(f"{where}.params.{overlap[0]}: DeepSpeed sets it itself for {cls.__name__}; remove it")
    check_signature(cls, {**params, **added}, where=f"{where}.params", n_args=1)
    if cls.__module__.startswith("torch."):
        try:
            cls([torch.nn.Parameter(torch.zeros(1))], **params, **added)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}.params: {cls.__name__} rejected the value: {exc}") from None


def check_deepspeed_scheduler(ds: Mapping[str, Any], where: str) -> None:
    """Resolve ``ds["scheduler"]`` as DeepSpeed will and build it on a throwaway optimizer.

    DeepSpeed looks the type up in ``deepspeed.runtime.lr_schedules``, then in
    ``torch.optim.lr_scheduler``; both kinds are plain Python and cheap to construct.

    Args:
        ds: one engine's DeepSpeed dict.
        where: the scheduler's path as written (``deepspeed.scheduler``, with its file).
    """
    spec = ds.get("scheduler")
    if spec is None:
        return
    import torch
    from deepspeed.runtime import lr_schedules  # deepspeed is heavy: imported when checking only

    name = spec.get("type") if isinstance(spec, Mapping) else None
    if not isinstance(name, str):
        raise ConfigError(f"{where}.type: expected a scheduler name, got {name!r}")
    cls = getattr(lr_schedules, name, None) or getattr(torch.optim.lr_scheduler, name, None)
    if not isinstance(cls, type):
        known = list(lr_schedules.VALID_LR_SCHEDULES)
        raise ConfigError(f"{where}.type: {name!r} is neither a DeepSpeed scheduler nor a torch.optim.lr_scheduler "
                          f"class.{did_you_mean(name, known)} DeepSpeed's: {', '.join(known)}")
    params = dict(spec.get("params") or {})
    check_signature(cls, params, where=f"{where}.params", n_args=1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=float(params.get("warmup_max_lr", 0.1) or 0.1))
    try:
        with quiet("DeepSpeed"):  # DeepSpeed's schedulers warn about a step never taken
            cls(optimizer, **params)
    except (ValueError, TypeError, AssertionError, KeyError) as exc:
        raise ConfigError(f"{where}.params: {name} rejected the value: {exc}") from None
