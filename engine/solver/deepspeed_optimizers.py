"""Which optimizer types DeepSpeed builds itself, and the ``optimizer`` section to hand it.

The table mirrors ``DEEPSPEED_OPTIMIZERS`` in ``deepspeed/runtime/config.py`` (the names
``DeepSpeedEngine._configure_basic_optimizer`` in ``deepspeed/runtime/engine.py`` builds
itself; any other ``optimizer.type`` DeepSpeed looks up with ``getattr(torch.optim, ...)``).
It is copied rather than imported so that importing ``engine.solver`` does not import
DeepSpeed; ``tests/unit/test_solver_deepspeed.py`` compares it with DeepSpeed's list so a
DeepSpeed upgrade that changes the list fails a test instead of silently drifting.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Dict, Mapping, Optional

from engine.errors import ConfigError
from engine.solver._util import plain
from engine.utils.suggest import did_you_mean

#: lower-case name DeepSpeed's config accepts as ``optimizer.type`` -> the spelling engine
#: writes into ds_config.json (DeepSpeed lower-cases these names itself, so any case works).
DEEPSPEED_OPTIMIZER_TYPES: Dict[str, str] = {
    "adagrad": "Adagrad",
    "adam": "Adam",
    "adamw": "AdamW",
    "lamb": "Lamb",
    "muadam": "MuAdam",
    "muadamw": "MuAdamW",
    "musgd": "MuSGD",
    "lion": "Lion",
    "muon": "Muon",
}

# DeepSpeed imports these from another package and, when it is missing, logs an error and
# then fails with an unrelated NameError; engine checks up front instead.
_REQUIRED_PACKAGE = {"MuAdam": "mup", "MuAdamW": "mup", "MuSGD": "mup"}

# Adam-family types whose implementation DeepSpeed picks (FusedAdam, DeepSpeedCPUAdam, or
# torch's with ``torch_adam``).
_ADAM_FAMILY = ("Adam", "AdamW")


def deepspeed_optimizer_name(type_name: str) -> Optional[str]:
    """DeepSpeed's spelling of ``type_name`` when DeepSpeed builds that optimizer itself, else None.

    None means the type must be built by engine as a client ``torch.optim`` optimizer
    (``build_optimizer``) and handed to ``deepspeed.initialize``.
    """
    if not isinstance(type_name, str):
        return None
    return DEEPSPEED_OPTIMIZER_TYPES.get(type_name.lower())


def deepspeed_optimizer_config(
    spec: Mapping[str, Any], *, where: str, torch_impl: bool = False
) -> Dict[str, Any]:
    """The ds_config ``optimizer`` section for a config's ``optimizer {type, params}``.

    Two DeepSpeed behaviours are corrected so a config means the same as with torch:

    - DeepSpeed's ``Adam`` is AdamW (decoupled weight decay) unless ``adam_w_mode`` is
      false; engine sets ``adam_w_mode: false`` for ``Adam`` unless the params set it, so
      ``type='Adam', weight_decay=...`` is torch's L2-penalty Adam as in the seed.
    - ``torch_impl=True`` (e.g. on CPU, where DeepSpeed would JIT-compile its fused or CPU
      Adam for over a minute) adds ``torch_adam: true`` for the Adam family unless set.

    Raises:
        ConfigError: the type is not one DeepSpeed builds, ``max_grad_norm`` is in params
            (DeepSpeed refuses it; clipping is ``clip_gradients``), or the type needs a
            package that is not installed.
    """
    type_name = spec["type"]
    name = deepspeed_optimizer_name(type_name)
    if name is None:
        known = sorted(DEEPSPEED_OPTIMIZER_TYPES.values())
        raise ConfigError(
            f"{where}.type: {type_name!r} is not an optimizer DeepSpeed builds.{did_you_mean(str(type_name), known)} "
            f"DeepSpeed's: {', '.join(known)}"
        )
    params = plain(spec.get("params") or {})
    if "max_grad_norm" in params:
        raise ConfigError(
            f"{where}.params.max_grad_norm: DeepSpeed does not accept it; use clip_gradients "
            f"(enabled=True, clip_type='norm', clip_value=...) beside the optimizer instead"
        )
    package = _REQUIRED_PACKAGE.get(name)
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(f"{where}.type: DeepSpeed's {name} needs the {package!r} package: pip install {package}")
    if name == "Adam":
        params.setdefault("adam_w_mode", False)
    if torch_impl and name in _ADAM_FAMILY:
        params.setdefault("torch_adam", True)
    return {"type": name, "params": params}
