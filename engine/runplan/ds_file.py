"""The DeepSpeed side of a config: the JSON that ``deepspeed.config`` names, with the section over it.

People arrive with a ``ds_config.json`` that already holds ``optimizer``, batch sizes and
clipping. Such a file is welcome: where the user wrote no solver value, the file's value is
taken into the solver (``welcome_ds_file``), so that the data loader, the client optimizer
and DeepSpeed all read one number. Only two values the user wrote that disagree are an
error, and it names both places as written. ``"auto"`` (Hugging Face's spelling for "the
trainer fills this in") is filled from the solver.

This module also knows where each DeepSpeed key came from (``DsSources``): the ``deepspeed``
section of the config, or the JSON file, so that every error names the path the user must
edit. It imports neither torch nor DeepSpeed.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Tuple

from engine.config.loader import merge
from engine.config.node import to_plain
from engine.errors import ConfigError
from engine.utils.suggest import did_you_mean

#: keys of the ``deepspeed`` section that engine interprets and does not hand to DeepSpeed
ENGINE_KEYS = ("config", "shm_comm", "zero_init")

#: Hugging Face's DeepSpeed configs mark values the trainer fills in with this string
AUTO = "auto"


def template_dirs() -> list:
    """Where bundled templates live: inside the installed package, or at the repo's top level."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [os.path.join(here, "ds_configs"), os.path.join(os.path.dirname(here), "ds_configs")]


def resolve_template(name: str) -> str:
    """A template name (``zero2``), file name (``zero2.json``) or path, to an existing file."""
    if os.path.isfile(name):
        return os.path.abspath(name)
    base = os.path.basename(name)
    base = base if base.endswith(".json") else base + ".json"
    available = set()
    for folder in template_dirs():
        candidate = os.path.join(folder, base)
        if os.path.isfile(candidate):
            return candidate
        if os.path.isdir(folder):
            available.update(f[:-5] for f in os.listdir(folder) if f.endswith(".json"))
    raise ConfigError(
        f"deepspeed.config: {name!r} is neither a file nor a bundled template.{did_you_mean(base[:-5], available)} "
        f"Bundled: {', '.join(sorted(available))}"
    )


def load_template(name: str) -> Dict[str, Any]:
    """The JSON object in the file ``deepspeed.config`` names."""
    path = resolve_template(name)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"deepspeed.config: {path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"deepspeed.config: {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"deepspeed.config: {path} must hold a JSON object, got {type(data).__name__}")
    return data


@dataclass(frozen=True)
class DsSources:
    """Where each key of the merged DeepSpeed dict came from, for messages.

    Attributes:
        section: the ``deepspeed`` section as the user wrote it (without engine's own keys).
        template: ``deepspeed.config`` as written.
        path: the file it resolved to.
    """

    section: Mapping[str, Any]
    template: str
    path: str

    def written_in_section(self, dotted: str) -> bool:
        """Whether ``deepspeed.<dotted>`` (or a value holding it) is in the config's own section."""
        node: Any = self.section
        for part in dotted.split("."):
            if not isinstance(node, Mapping):
                return True  # the section sets a non-dict value above this key: it replaced the file's
            if part not in node:
                return False
            node = node[part]
        return True

    def __call__(self, dotted: str) -> str:
        """``deepspeed.<dotted>``, plus the file when the key came from it rather than the section."""
        if self.written_in_section(dotted):
            return f"deepspeed.{dotted}"
        return f"deepspeed.{dotted} (from {self.path}, the deepspeed.config file)"


def deepspeed_side(cfg: Mapping[str, Any]) -> Tuple[Dict[str, Any], DsSources]:
    """The ``deepspeed`` section merged over its JSON file, and where each key came from."""
    section = cfg["deepspeed"]
    template = section["config"]
    written = {k: to_plain(v) for k, v in section.items() if k not in ENGINE_KEYS}
    sources = DsSources(written, template, resolve_template(template))
    return merge(load_template(template), written), sources


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.lower() == AUTO


def is_written(cfg: Any, path: str) -> bool:
    """Whether the user wrote ``path``; a plain dict (no record) counts every key as written."""
    check = getattr(cfg, "is_written", None)
    return True if check is None else check(path)


def adopt_optimizer(ds_optimizer: Mapping[str, Any], solver_params: Mapping[str, Any], where: str) -> Dict[str, Any]:
    """The solver ``optimizer`` dict meaning what DeepSpeed's ``optimizer`` section means.

    ``"auto"`` params take the solver's value of the same name, or are dropped (the class
    default) when it has none. DeepSpeed's ``Adam`` is AdamW unless ``adam_w_mode`` is false,
    whereas engine's ``Adam`` is torch's; the mode is written out so the meaning survives.

    Args:
        ds_optimizer: DeepSpeed's ``{"type": ..., "params": {...}}``.
        solver_params: the solver's optimizer params (written or default), for ``"auto"``.
        where: the path of ``ds_optimizer`` as written, for errors.
    """
    if not isinstance(ds_optimizer, Mapping) or not isinstance(ds_optimizer.get("type"), str):
        raise ConfigError(f"{where}: expected {{\"type\": <optimizer name>, \"params\": {{...}}}}, got {ds_optimizer!r}")
    params = ds_optimizer.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}.params: expected a dict of optimizer arguments, got {params!r}")
    adopted = {}
    for key, value in params.items():
        if not is_auto(value):
            adopted[key] = copy.deepcopy(value)
        elif key in solver_params:
            adopted[key] = to_plain(solver_params[key])
    if ds_optimizer["type"].lower() == "adam":
        adopted.setdefault("adam_w_mode", True)
    return {"type": ds_optimizer["type"], "params": adopted}


def same_optimizer(ds_optimizer: Mapping[str, Any], spec: Mapping[str, Any], where: str) -> bool:
    """Whether DeepSpeed's ``optimizer`` section and a solver ``optimizer`` say the same."""
    adopted = adopt_optimizer(ds_optimizer, spec.get("params") or {}, where)
    params = dict(to_plain(spec.get("params") or {}))
    if spec["type"].lower() == "adam":
        params.setdefault("adam_w_mode", False)  # engine's Adam is torch's (see deepspeed_optimizer_config)
    return adopted["type"].lower() == spec["type"].lower() and adopted["params"] == params


def welcome_ds_file(cfg: Any) -> Any:
    """``cfg`` with the generator's solver values taken from the DeepSpeed side where the user wrote none.

    Taken: ``train_micro_batch_size_per_gpu`` and ``gradient_accumulation_steps`` (into
    ``solver.train_per_batch`` and ``solver.gradient_accumulation_batch``), ``gradient_clipping``
    (into ``solver.generator.clip_gradients``) and ``optimizer`` (into
    ``solver.generator.optimizer``). A DeepSpeed ``scheduler`` stays DeepSpeed's. The result is
    checked again by ``build_ds_config``, which reports any disagreement left, between two
    values the user wrote. Idempotent: a config that already agrees is returned as is.

    Args:
        cfg: the validated config (a ``CfgNode`` remembers what the user wrote).

    Returns:
        ``cfg`` itself when nothing is taken, else a frozen copy with the taken values.
    """
    ds, sources = deepspeed_side(cfg)
    solver = to_plain(cfg["solver"])
    taken = False

    accumulation = ds.get("gradient_accumulation_steps")
    if _number(accumulation) and not is_written(cfg, "solver.gradient_accumulation_batch"):
        taken |= _take(solver, ("gradient_accumulation_batch",), int(accumulation))
    micro = ds.get("train_micro_batch_size_per_gpu")
    if _number(micro) and not is_written(cfg, "solver.train_per_batch"):
        taken |= _take(solver, ("train_per_batch",), int(micro) * max(1, solver["gradient_accumulation_batch"]))
    steps = max(1, solver["gradient_accumulation_batch"])
    if solver["train_per_batch"] % steps:
        raise ConfigError(
            f"solver.train_per_batch = {solver['train_per_batch']} is not divisible by "
            f"{sources('gradient_accumulation_steps')} = {steps}: the micro batch is their quotient"
        )

    clipping = ds.get("gradient_clipping")
    if _number(clipping) and not is_written(cfg, "solver.generator.clip_gradients"):
        clip = dict(solver["generator"]["clip_gradients"], enabled=float(clipping) > 0, clip_type="norm",
                    clip_value=float(clipping))
        taken |= _take(solver, ("generator", "clip_gradients"), clip)

    if isinstance(ds.get("optimizer"), Mapping) and not is_written(cfg, "solver.generator.optimizer"):
        current = solver["generator"]["optimizer"]
        adopted = adopt_optimizer(ds["optimizer"], current.get("params") or {}, sources("optimizer"))
        taken |= _take(solver, ("generator", "optimizer"), adopted)

    if not taken:
        return cfg
    # a plain dict counts as all written, so only a CfgNode gets here; its clone keeps the record
    # of written paths, so the taken values stay "not the user's"
    updated = cfg.clone()
    updated["solver"] = solver
    return updated.freeze()


def _take(section: Dict[str, Any], keys: Tuple[str, ...], value: Any) -> bool:
    """Set ``section[keys...] = value``; whether it changed anything."""
    node = section
    for key in keys[:-1]:
        node = node[key]
    if node.get(keys[-1]) == value:
        return False
    node[keys[-1]] = value
    return True


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

