"""Checks that relate several framework keys; run after each key was validated alone."""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Mapping, Tuple

from engine.errors import ConfigError
from engine.config.defaults import NETWORK_SOLVER


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
    decay = solver["ema"]["decay_rate"]
    if not 0.0 <= decay <= 1.0:
        raise ConfigError(f"solver.ema.decay_rate (or trainer.model.ema.decay_rate) = {decay}: expected a value in [0, 1] "
                          "(the share of the old average kept at each optimizer step)")
    _check_skip_samples(cfg["dataloader"]["skip_samples"])
    _check_spike(solver["spike"])
    check_discriminators(cfg)
    _check_norm_type(solver["generator"], "solver.generator")
    for name, _, net_solver, where in discriminator_plan(cfg):
        _check_norm_type(net_solver, where)


def _check_skip_samples(indices: List[Any]) -> None:
    """``dataloader.skip_samples`` holds dataset indices: non-negative ints (their range is checked with the data set)."""
    for position, index in enumerate(indices):
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ConfigError(f"dataloader.skip_samples[{position}] = {index!r}: expected a training-set index "
                              "(an int >= 0)")
def _check_spike(spike: Mapping[str, Any]) -> None:
    if spike["warmup"] > spike["window"]:
        raise ConfigError(f"solver.spike.warmup = {spike['warmup']} is larger than solver.spike.window = "
                          f"{spike['window']}: the window holds at most window losses; expected warmup in "
                          f"[2, {spike['window']}]")
    if spike["z"] <= 0:
        raise ConfigError(f"solver.spike.z = {spike['z']}: expected a threshold above 0 (standard deviations "
                          "above the window's mean loss)")


def _check_norm_type(net_solver: Mapping[str, Any], where: str) -> None:
    clip = net_solver["clip_gradients"]
    if clip["enabled"] and clip["clip_type"] == "norm" and clip["norm_type"] != 2.0:
        raise ConfigError(
            f"{where}.clip_gradients.norm_type = {clip['norm_type']}: DeepSpeed clips the 2-norm only; "
            "use 2.0, or clip_type='value'"
        )


def discriminator_names(spec: Any) -> List[Tuple[str, Any]]:
    """(name, network spec) of each discriminator in ``trainer.model.discriminator``.

    One dict is one network named ``default``; a list holds ``dict(name=..., params=<network spec>)``.
    """
    if spec is None:
        return []
    if isinstance(spec, Mapping):
        return [("default", spec)]
    named = []
    for index, item in enumerate(spec):
        where = f"trainer.model.discriminator[{index}]"
        name, params = item.get("name"), item.get("params")
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigError(f"{where}.name = {name!r}: expected a non-empty name (no '/'), as in "
                              "dict(name='patch', params=dict(name=<BUILD_NETWORK_REGISTRY name>, ...))")
        if not isinstance(params, Mapping) or "name" not in params:
            raise ConfigError(f"{where}.params = {params!r}: expected the network, dict(name=<BUILD_NETWORK_REGISTRY name>, ...)")
        extra = sorted(set(item) - {"name", "params"})
        if extra:
            raise ConfigError(f"{where}: unknown keys {extra}; a list entry is dict(name=..., params=...)")
        earlier = [n for n, _ in named]
        if name in earlier:
            raise ConfigError(f"{where}.name = {name!r} repeats trainer.model.discriminator[{earlier.index(name)}].name; "
                              "discriminator names must be unique")
        named.append((name, params))
    if not named:
        raise ConfigError("trainer.model.discriminator = []: give one dict, a non-empty list, or leave it out")
    return named


def check_discriminators(cfg: Dict[str, Any]) -> None:
    """Match ``solver.discriminator`` to the discriminators by name and fill its defaults in place.

    ``solver.discriminator`` is one solver dict (used by every discriminator) or a list of
    ``dict(name=..., params=dict(optimizer=..., lr_scheduler=..., clip_gradients=...))`` with
    exactly one entry per discriminator name.
    """
    names = [n for n, _ in discriminator_names(cfg["trainer"]["model"]["discriminator"])]
    spec = cfg["solver"]["discriminator"]
    if not names:
        if spec:
            raise ConfigError("solver.discriminator is set but trainer.model.discriminator is not: "
                              "configure the discriminator networks, or remove solver.discriminator")
        return
    if spec is None or isinstance(spec, Mapping):
        cfg["solver"]["discriminator"] = NETWORK_SOLVER.check(_fold_clip(spec, "solver.discriminator"), "solver.discriminator")
        return
    filled, seen = [], {}
    for index, item in enumerate(spec):
        where = f"solver.discriminator[{index}]"
        name = item.get("name")
        if name not in names:
            raise ConfigError(f"{where}.name = {name!r} matches no discriminator in trainer.model.discriminator "
                              f"(names: {', '.join(names)})")
        if name in seen:
            raise ConfigError(f"{where}.name = {name!r} repeats solver.discriminator[{seen[name]}].name")
        extra = sorted(set(item) - {"name", "params"})
        if extra:
            raise ConfigError(f"{where}: unknown keys {extra}; a list entry is dict(name=..., params=dict(optimizer=..., ...))")
        seen[name] = index
        params = NETWORK_SOLVER.check(_fold_clip(item.get("params"), f"{where}.params"), f"{where}.params")
        filled.append({"name": name, "params": params})
    missing = [n for n in names if n not in seen]
    if missing:
        raise ConfigError(f"solver.discriminator has no entry for discriminator(s) {', '.join(map(repr, missing))} of "
                          "trainer.model.discriminator; add dict(name=..., params=dict(optimizer=...)) for each, "
                          "or give solver.discriminator as one dict for all")
    cfg["solver"]["discriminator"] = filled


def _fold_clip(section: Any, where: str) -> Dict[str, Any]:
    """The seed also nests clip_gradients inside optimizer; move it beside (as for the generator)."""
    section = copy.deepcopy(dict(section or {}))
    optimizer = section.get("optimizer")
    if isinstance(optimizer, Mapping) and "clip_gradients" in optimizer:
        optimizer = dict(optimizer)
        clip = optimizer.pop("clip_gradients")
        if "clip_gradients" in section and section["clip_gradients"] != clip:
            raise ConfigError(f"{where}.optimizer.clip_gradients conflicts with {where}.clip_gradients; set only one of them")
        section["optimizer"], section["clip_gradients"] = optimizer, clip
    return section


def discriminator_plan(cfg: Mapping[str, Any]) -> List[Tuple[str, Mapping[str, Any], Mapping[str, Any], str]]:
    """(name, network spec, solver section, solver key path) per discriminator, for a checked config."""
    spec = cfg["solver"]["discriminator"]
    plan = []
    for name, network in discriminator_names(cfg["trainer"]["model"]["discriminator"]):
        if isinstance(spec, Mapping):
            plan.append((name, network, spec, "solver.discriminator"))
        else:
            index = next(i for i, item in enumerate(spec) if item["name"] == name)
            plan.append((name, network, spec[index]["params"], f"solver.discriminator[{index}].params"))
    return plan
