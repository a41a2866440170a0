"""Derive the DeepSpeed config dict from the framework config (DESIGN.md §2).

One config is the source of truth: batch sizes, accumulation, optimizer and clipping come
from ``solver``; ZeRO, precision, offload and the rest from the ``deepspeed`` section merged
over a ``ds_configs/*.json`` template. A value given in both places with different values is
an error naming both key paths. Pure function of its inputs: imports neither torch nor
DeepSpeed, so it runs in the config check before anything starts.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional, Tuple

from engine.config.loader import merge
from engine.config.node import to_plain
from engine.errors import ConfigError
from engine.utils.fileio import atomic_write_text
from engine.utils.suggest import did_you_mean

#: keys of the ``deepspeed`` section that engine interprets and does not hand to DeepSpeed
ENGINE_KEYS = ("config", "shm_comm", "zero_init")


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
    path = resolve_template(name)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"deepspeed.config: {path} is not valid JSON: {exc}") from None


def build_ds_config(cfg: Mapping[str, Any], *, world_size: int, device: str,
                    solver: Optional[Mapping[str, Any]] = None, where: str = "solver.generator") -> Dict[str, Any]:
    """The DeepSpeed config for this run.

    Args:
        cfg: the validated framework config.
        world_size: number of processes in the job.
        device: ``"cuda"`` or ``"cpu"``; decides fp16 support and the Adam implementation.
        solver: the network's solver section (optimizer, lr_scheduler, clip_gradients); default
            ``solver.generator``. Each GAN discriminator is its own engine with its own section.
        where: the config path of ``solver``, named in errors.

    Returns:
        A JSON-serialisable dict for ``deepspeed.initialize(config=...)``.
    """
    section = cfg["deepspeed"]
    template_name = section["config"]
    # plain dicts, not CfgNodes: DeepSpeed pickles its config into every checkpoint file ("ds_config"),
    # and a checkpoint must hold only data that loads with weights_only=True
    user = {k: to_plain(v) for k, v in section.items() if k not in ENGINE_KEYS}
    ds = merge(load_template(template_name), user)

    def origin(key: str) -> str:
        return f"deepspeed.{key}" if key in user else f"deepspeed.{key} (from template {template_name!r})"

    net_solver, solver = solver, cfg["solver"]
    accumulation = max(1, solver["gradient_accumulation_batch"])
    micro = solver["train_per_batch"] // accumulation
    data_parallel = world_size // model_parallel_size(ds)
    derived = {
        "train_micro_batch_size_per_gpu": (micro, "solver.train_per_batch // solver.gradient_accumulation_batch"),
        "gradient_accumulation_steps": (accumulation, "solver.gradient_accumulation_batch"),
        "train_batch_size": (micro * accumulation * data_parallel, "solver.train_per_batch × data-parallel size"),
    }
    for key, (value, source) in derived.items():
        _set_once(ds, key, value, origin(key), source)

    network = solver["generator"] if net_solver is None else net_solver
    _derive_clipping(ds, network["clip_gradients"], origin, where)
    _derive_optimizer(ds, network["optimizer"], origin, device, where)
    if network["lr_scheduler"]["enabled"] and "scheduler" in ds:
        raise ConfigError(
            f"{origin('scheduler')} conflicts with {where}.lr_scheduler (enabled): set the schedule in one place"
        )
    _check_precision(ds, origin, device)
    _check_model_parallel(ds, origin, world_size, accumulation, network["clip_gradients"], where)  # pipeline/TP
    stage = int(ds.get("zero_optimization", {}).get("stage", 0))
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"{origin('zero_optimization')}.stage: {stage} is not one of 0, 1, 2, 3")
    if "optimizer" not in ds and _offloads_optimizer(ds):
        # a client (torch.optim) optimizer with offload is fine on CPU; DeepSpeed refuses it unless told
        ds.setdefault("zero_force_ds_cpu_optimizer", False)
    if "optimizer" not in ds and stage > 0:
        ds.setdefault("zero_allow_untested_optimizer", True)
    return ds


def model_parallel_size(ds: Mapping[str, Any]) -> int:
    """Processes that share one model replica (tensor × pipeline parallel); 1 for pure data parallel."""
    tp = int((ds.get("tensor_parallel") or {}).get("autotp_size", 1) or 1)
    pp = int((ds.get("pipeline") or {}).get("stages", 1) or 1)
    return max(1, tp) * max(1, pp)


def data_parallel_coords(ds: Mapping[str, Any], rank: int, world_size: int) -> Tuple[int, int]:
    """``(data-parallel rank, data-parallel size)`` of ``rank``: which share of the data it reads.

    Ranks of one model replica must read the same batches. DeepSpeed lays pipeline ranks
    out stage-major (``PipeDataParallelTopology``: rank = stage × replicas + replica), so a
    replica's stages are ``replicas`` apart; AutoTP's tensor-parallel ranks are consecutive.
    """
    size = max(1, world_size // model_parallel_size(ds))
    if int((ds.get("pipeline") or {}).get("stages", 1) or 1) > 1:
        return rank % size, size
    return rank // model_parallel_size(ds), size


def _check_model_parallel(ds: Mapping[str, Any], origin, world_size: int, accumulation: int,
                          clip: Mapping[str, Any], where: str) -> None:
    """Pipeline/tensor-parallel settings that no run could honour, named before anything starts."""
    parallel = model_parallel_size(ds)
    if world_size % parallel:
        raise ConfigError(f"{origin('pipeline')}.stages × {origin('tensor_parallel')}.autotp_size = {parallel} "
                          f"does not divide the world size {world_size}")
    pipe = ds.get("pipeline") or {}
    if int(pipe.get("stages", 1) or 1) <= 1:
        return
    if "micro_batches" in pipe and int(pipe["micro_batches"]) != accumulation:
        raise ConfigError(f"{origin('pipeline')}.micro_batches = {pipe['micro_batches']} conflicts with "
                          f"solver.gradient_accumulation_batch = {accumulation}: a pipeline step's micro-batches are "
                          "the accumulation; set one of them")
    if int((ds.get("tensor_parallel") or {}).get("autotp_size", 1) or 1) > 1:
        raise ConfigError(f"{origin('pipeline')} with {origin('tensor_parallel')}: engine runs one of them at a time")
    if clip["enabled"] and clip["clip_type"] == "value":
        raise ConfigError(f"{where}.clip_gradients.clip_type = 'value' with {origin('pipeline')}: the pipeline engine "
                          "steps inside train_batch; use clip_type='norm'")


def uses_client_optimizer(ds: Mapping[str, Any]) -> bool:
    """Whether engine must build a torch.optim optimizer itself (DeepSpeed builds the others)."""
    return "optimizer" not in ds


def _set_once(ds: Dict[str, Any], key: str, value: Any, where: str, source: str) -> None:
    if key in ds and ds[key] != value:
        raise ConfigError(
            f"{where} = {ds[key]!r} conflicts with {source} = {value!r}; remove it from the deepspeed section "
            "(engine derives it)"
        )
    ds[key] = value


def _derive_clipping(ds: Dict[str, Any], clip: Mapping[str, Any], origin, where: str) -> None:
    if clip["enabled"] and clip["clip_type"] == "norm":
        _set_once(ds, "gradient_clipping", float(clip["clip_value"]), origin("gradient_clipping"),
                  f"{where}.clip_gradients.clip_value")
    else:
        # DeepSpeed's own default is 1.0 (runtime/constants.py): without this, "no clipping"
        # would silently clip the global norm at 1; 0.0 is DeepSpeed's "off"
        ds.setdefault("gradient_clipping", 0.0)


def _derive_optimizer(ds: Dict[str, Any], spec: Mapping[str, Any], origin, device: str, where: str) -> None:
    from engine.solver import deepspeed_optimizer_config, deepspeed_optimizer_name  # no deepspeed import

    if "optimizer" in ds:
        raise ConfigError(
            f"{origin('optimizer')} conflicts with {where}.optimizer: set the optimizer in solver only"
        )
    if deepspeed_optimizer_name(spec["type"]) is None:
        return  # a torch.optim class: engine builds it and hands it to deepspeed.initialize
    # on CPU DeepSpeed's fused/CPU Adam would JIT-compile for over a minute; torch's is as fast
    ds["optimizer"] = deepspeed_optimizer_config(spec, where=f"{where}.optimizer", torch_impl=device == "cpu")


def _check_precision(ds: Dict[str, Any], origin, device: str) -> None:
    fp16 = bool((ds.get("fp16") or {}).get("enabled", False))
    bf16 = bool((ds.get("bf16") or {}).get("enabled", False))
    if fp16 and bf16:
        raise ConfigError(f"{origin('fp16')}.enabled and {origin('bf16')}.enabled are both true; choose one")
    if fp16 and device != "cuda":
        raise ConfigError(
            f"{origin('fp16')}.enabled = true, but this run's device ({device}) does not support fp16 in DeepSpeed; "
            "use bf16 or fp32 on CPU"
        )
    if "pipeline" in ds and int(ds.get("zero_optimization", {}).get("stage", 0)) > 1:
        raise ConfigError(
            f"{origin('pipeline')} with {origin('zero_optimization')}.stage > 1: DeepSpeed runs pipelines with ZeRO 0-1 only"
        )


def _offloads_optimizer(ds: Mapping[str, Any]) -> bool:
    offload = (ds.get("zero_optimization") or {}).get("offload_optimizer") or {}
    return offload.get("device", "none") not in ("none", None)


def write_ds_config(ds: Mapping[str, Any], path: str) -> None:
    """Write ``ds_config.json`` atomically."""
    atomic_write_text(path, json.dumps(ds, indent=2, sort_keys=True))


def precision_name(ds: Mapping[str, Any]) -> str:
    """``"bf16"`` or ``"fp16"`` when the DeepSpeed config enables it, else ``"fp32"``."""
    for key in ("bf16", "fp16"):
        if (ds.get(key) or {}).get("enabled", False):
            return key
    return "fp32"


def summarize(ds: Mapping[str, Any]) -> str:
    """One line for the start-of-run report."""
    zero = ds.get("zero_optimization", {})
    precision = precision_name(ds)
    optimizer: Optional[Mapping] = ds.get("optimizer")
    return (
        f"ZeRO stage {zero.get('stage', 0)}, {precision}, micro batch {ds['train_micro_batch_size_per_gpu']}, "
        f"accumulation {ds['gradient_accumulation_steps']}, global batch {ds['train_batch_size']}, "
        f"optimizer {optimizer['type'] + ' (DeepSpeed)' if optimizer else 'client torch.optim'}"
    )
