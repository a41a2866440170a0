"""The seed's alternative spellings, folded into one canonical place before validation.

The seed is inconsistent: EMA lives in ``solver.ema`` or ``trainer.model.ema``
and is switched by ``enabled`` or ``enable``; the loss lives in ``trainer.loss`` or
``trainer.model.loss``; ``clip_gradients`` sits beside ``optimizer`` or inside it. Both
forms are accepted; one value set in both places with different values is an error that
names both paths. After validation both places hold the same value, so seed code reading
either spelling works. The seed also wrote "none" as None where engine has a value for it
(``SEED_NONE``); those None values are read as engine's value.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

from engine.errors import ConfigError

_MISSING = object()

#: Keys whose None (the seed's default) means what engine spells with a value: no
#: pretrained weights, and an EMA without the warm-up of its decay.
SEED_NONE = {
    ("trainer", "weights"): "",
    ("solver", "ema", "num_updates"): -1,
}


def fold_aliases(data: Dict[str, Any]) -> Dict[str, Any]:
    """Move seed spellings to their canonical keys (on a copy)."""
    data = copy.deepcopy(data)
    trainer = _section(data, "trainer")
    model = _section(trainer, "model") if trainer is not None else None
    solver = _section(data, "solver")

    if model is not None:
        ema = _pop(model, "ema")
        if ema is not _MISSING and ema is not None:
            if not isinstance(ema, dict):
                raise ConfigError(f"trainer.model.ema: expected a dict, got {ema!r}")
            ema = dict(ema)
            _rename(ema, "enable", "enabled", "trainer.model.ema")
            solver = solver if solver is not None else data.setdefault("solver", {})
            target = _section(solver, "ema") or solver.setdefault("ema", {})
            for key, value in ema.items():
                _put(target, key, value, f"trainer.model.ema.{key}", f"solver.ema.{key}")
        loss = _pop(trainer, "loss")
        if loss is not _MISSING and loss is not None:
            _put(model, "loss", loss, "trainer.loss", "trainer.model.loss")
    if solver is not None:
        ema = _section(solver, "ema")
        if ema is not None:
            _rename(ema, "enable", "enabled", "solver.ema")
        for name, net in _network_solvers(solver):
            optimizer = _section(net, "optimizer")
            clip = _pop(optimizer, "clip_gradients") if optimizer is not None else _MISSING
            if clip is not _MISSING:
                _put(net, "clip_gradients", clip, f"solver.{name}.optimizer.clip_gradients", f"solver.{name}.clip_gradients")
    for path, value in SEED_NONE.items():
        parent = data
        for key in path[:-1]:
            parent = _section(parent, key)
        real = _key(parent, path[-1]) if parent is not None else None
        if real is not None and parent[real] is None:
            parent[real] = value
    return data


def mirror_aliases(cfg: Dict[str, Any]) -> None:
    """Write the canonical values back under the seed spellings (on the validated dict)."""
    ema = dict(cfg["solver"]["ema"])
    cfg["trainer"]["model"]["ema"] = dict(ema, enable=ema["enabled"])
    cfg["trainer"]["loss"] = copy.deepcopy(cfg["trainer"]["model"]["loss"])


def _network_solvers(solver: Dict[str, Any]) -> List:
    found = []
    gen = _section(solver, "generator")
    if gen is not None:
        found.append(("generator", gen))
    return found


def _section(parent: Optional[Dict[str, Any]], key: str) -> Optional[Dict[str, Any]]:
    if parent is None:
        return None
    real = _key(parent, key)
    value = parent.get(real) if real is not None else None
    return value if isinstance(value, dict) else None


def _key(mapping: Dict[str, Any], key: str) -> Optional[str]:
    for existing in mapping:
        if isinstance(existing, str) and existing.lower() == key:
            return existing
    return None


def _pop(mapping: Dict[str, Any], key: str) -> Any:
    real = _key(mapping, key)
    return mapping.pop(real) if real is not None else _MISSING


def _put(target: Dict[str, Any], key: str, value: Any, from_path: str, to_path: str) -> None:
    existing = _key(target, key)
    if existing is not None and target[existing] != value:
        raise ConfigError(
            f"{from_path} = {value!r} conflicts with {to_path} = {target[existing]!r}; set only one of them"
        )
    target[existing or key] = value


def _rename(mapping: Dict[str, Any], old: str, new: str, path: str) -> None:
    value = _pop(mapping, old)
    if value is not _MISSING:
        _put(mapping, new, value, f"{path}.{old}", f"{path}.{new}")
