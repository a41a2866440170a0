"""Derive the DeepSpeed config dict from the framework config (docs/deepspeed_config.md, "How it is derived").

One config is the source of truth: batch sizes, accumulation, optimizer and clipping come
from ``solver``; ZeRO, precision, offload and the rest from the ``deepspeed`` section merged
over a ``ds_configs/*.json`` template or the user's own DeepSpeed JSON. Values of that JSON
the user did not also write in ``solver`` are taken into it first (``ds_file``); two written
values that disagree are an error naming both key paths. Pure function of its inputs:
imports neither torch nor DeepSpeed, so it runs in the config check before anything starts.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional

from engine.errors import ConfigError
from engine.runplan.ds_file import (  # noqa: F401  (template helpers re-exported for callers of this module)
    ENGINE_KEYS,
    deepspeed_side,
    is_auto,
    load_template,
    resolve_template,
    same_optimizer,
    template_dirs,
    welcome_ds_file,
)
from engine.utils.fileio import atomic_write_text
from engine.solver import deepspeed_optimizer_config, deepspeed_optimizer_name

#: DeepSpeed-side keys that configure the generator's engine; a discriminator takes its own
#: from its solver section instead
_GENERATOR_ONLY = ("optimizer", "scheduler", "gradient_clipping")

#: model-parallel sizes the batch arithmetic divides by: (section, key)
_PARALLEL_SIZES = (("pipeline", "stages"), ("tensor_parallel", "autotp_size"))

#: DeepSpeed-side keys engine reads as dicts while deriving
_SECTIONS = ("zero_optimization", "fp16", "bf16", "pipeline", "tensor_parallel", "optimizer", "scheduler")


def build_ds_config(cfg: Mapping[str, Any], *, world_size: int, device: str,
                    solver: Optional[Mapping[str, Any]] = None, where: str = "solver.generator") -> Dict[str, Any]:
    """The DeepSpeed config for this run.

    An existing DeepSpeed JSON in ``deepspeed.config`` is welcome (``welcome_ds_file``): its
    values are taken where the user wrote no solver value, ``"auto"`` is filled from the
    solver (or left to DeepSpeed's default where engine has no value), and only two written
    values that disagree are an error naming both.

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
    cfg = welcome_ds_file(cfg)
    ds, origin = deepspeed_side(cfg)
    if solver is not None:
        for key in _GENERATOR_ONLY:
            ds.pop(key, None)

    net_solver, solver = solver, cfg["solver"]
    network = solver["generator"] if net_solver is None else net_solver
    for key in _SECTIONS:
        if key in ds and not isinstance(ds[key], dict):
            raise ConfigError(f"{origin(key)}: expected a dict (a JSON object), got {ds[key]!r}")
    _fill_scheduler_autos(ds, cfg, network)
    ds = _without_autos(ds)
    for section, key in _PARALLEL_SIZES:
        size = ds.get(section, {}).get(key, 1)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"{origin(f'{section}.{key}')}: {size!r}: expected an integer ≥ 1")
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

    _derive_clipping(ds, network["clip_gradients"], origin, where)
    _derive_optimizer(ds, network["optimizer"], origin, device, where)
    if network["lr_scheduler"]["enabled"] and "scheduler" in ds:
        raise ConfigError(
            f"{origin('scheduler')} conflicts with {where}.lr_scheduler (enabled): set the schedule in one place"
        )
    _check_precision(ds, origin, device)
    _check_model_parallel(ds, origin, world_size, accumulation, network["clip_gradients"], where)  # pipeline/TP
    raw_stage = (ds.get("zero_optimization") or {}).get("stage", 0)
    if isinstance(raw_stage, bool) or raw_stage not in (0, 1, 2, 3):
        raise ConfigError(f"{origin('zero_optimization.stage')}: {raw_stage!r} is not one of 0, 1, 2, 3")
    stage = zero_stage(ds)
    if "optimizer" not in ds and _offloads_optimizer(ds):
        # a client (torch.optim) optimizer with offload is fine on CPU; DeepSpeed refuses it unless told
        ds.setdefault("zero_force_ds_cpu_optimizer", False)
    if "optimizer" not in ds and stage > 0:
        ds.setdefault("zero_allow_untested_optimizer", True)
    return ds


def _fill_scheduler_autos(ds: Dict[str, Any], cfg: Mapping[str, Any], network: Mapping[str, Any]) -> None:
    """``"auto"`` in a DeepSpeed ``scheduler``'s params, filled from the solver as Hugging Face does.

    ``warmup_max_lr`` is the optimizer's lr, ``warmup_min_lr`` 0 and ``total_num_steps`` the
    run's optimizer steps (iteration mode); other ``"auto"`` params are dropped, so the
    scheduler class's default applies.
    """
    scheduler = ds.get("scheduler")
    params = scheduler.get("params") if isinstance(scheduler, dict) else None
    if not isinstance(params, dict):
        return
    lr = (network["optimizer"].get("params") or {}).get("lr")
    fills = {"warmup_max_lr": lr, "warmup_min_lr": 0.0}
    if not cfg["trainer"]["enable_epoch_method"]:
        fills["total_num_steps"] = cfg["solver"]["max_iter"]
    for key, value in list(params.items()):
        if is_auto(value) and fills.get(key) is not None:
            params[key] = fills[key]


def _without_autos(value: Any) -> Any:
    """Drop ``"auto"`` values engine did not fill: DeepSpeed's own config classes do the same
    (they fall back to their defaults), and ``ds_config.json`` should show what ran."""
    if isinstance(value, dict):
        return {k: _without_autos(v) for k, v in value.items() if not is_auto(v)}
    if isinstance(value, list):
        return [_without_autos(v) for v in value]
    return value


# ---- the one reading of each parallel size in a DeepSpeed config (the run plan's views use these) ----
def zero_stage(ds: Mapping[str, Any]) -> int:
    """The ZeRO stage (0 when unset)."""
    return int((ds.get("zero_optimization") or {}).get("stage", 0) or 0)


def pipeline_stages(ds: Mapping[str, Any]) -> int:
    """Pipeline stages; 1 means no pipeline."""
    return max(1, int((ds.get("pipeline") or {}).get("stages", 1) or 1))


def autotp_size(ds: Mapping[str, Any]) -> int:
    """Tensor-parallel degree (AutoTP); 1 means none."""
    return max(1, int((ds.get("tensor_parallel") or {}).get("autotp_size", 1) or 1))


def model_parallel_size(ds: Mapping[str, Any]) -> int:
    """Processes that share one model replica (tensor × pipeline parallel); 1 for pure data parallel."""
    return autotp_size(ds) * pipeline_stages(ds)


def _check_model_parallel(ds: Mapping[str, Any], origin, world_size: int, accumulation: int,
                          clip: Mapping[str, Any], where: str) -> None:
    """Pipeline/tensor-parallel settings that no run could honour, named before anything starts."""
    parallel = model_parallel_size(ds)
    if world_size % parallel:
        # name only the sizes that make up the product (a template's autotp_size 1 is not the cause)
        sizes = [(key, size) for key, size in (("pipeline.stages", pipeline_stages(ds)),
                                               ("tensor_parallel.autotp_size", autotp_size(ds))) if size > 1]
        product = " × ".join(f"{origin(key)} = {size}" for key, size in sizes)
        raise ConfigError(f"{product}{f' (together {parallel})' if len(sizes) > 1 else ''}: {parallel} "
                          f"does not divide the world size {world_size}")
    pipe = ds.get("pipeline") or {}
    if pipeline_stages(ds) <= 1:
        return
    if "micro_batches" in pipe and int(pipe["micro_batches"]) != accumulation:
        raise ConfigError(f"{origin('pipeline.micro_batches')} = {pipe['micro_batches']} conflicts with "
                          f"solver.gradient_accumulation_batch = {accumulation}: a pipeline step's micro-batches are "
                          "the accumulation; set one of them")
    if autotp_size(ds) > 1:
        raise ConfigError(f"{origin('pipeline')} with {origin('tensor_parallel')}: engine runs one of them at a time")
    if clip["enabled"] and clip["clip_type"] == "value":
        raise ConfigError(f"{where}.clip_gradients.clip_type = 'value' with {origin('pipeline')}: the pipeline engine "
                          "steps inside train_batch; use clip_type='norm'")


def uses_client_optimizer(ds: Mapping[str, Any]) -> bool:
    """Whether engine must build a torch.optim optimizer itself (DeepSpeed builds the others)."""
    return "optimizer" not in ds


def _set_once(ds: Dict[str, Any], key: str, value: Any, where: str, source: str) -> None:
    """Set a derived value; one the DeepSpeed side already holds must agree with it."""
    if key in ds and ds[key] != value:
        raise ConfigError(
            f"{where} = {ds[key]!r} conflicts with {source} = {value!r}; keep one of them "
            "(engine derives it from the solver)"
        )
    ds[key] = value


def _derive_clipping(ds: Dict[str, Any], clip: Mapping[str, Any], origin, where: str) -> None:
    if clip["enabled"] and clip["clip_type"] == "norm":
        _set_once(ds, "gradient_clipping", float(clip["clip_value"]), origin("gradient_clipping"),
                  f"{where}.clip_gradients.clip_value")
    elif ds.get("gradient_clipping", 0.0) not in (0, 0.0):
        # engine's clipping is off (or clamps values): DeepSpeed's norm clipping would clip too
        raise ConfigError(f"{origin('gradient_clipping')} = {ds['gradient_clipping']!r} conflicts with "
                          f"{where}.clip_gradients (enabled={clip['enabled']}, clip_type={clip['clip_type']!r}): "
                          "set the clipping in one place")
    else:
        # DeepSpeed's own default is 1.0 (runtime/constants.py): without this, "no clipping"
        # would silently clip the global norm at 1; 0.0 is DeepSpeed's "off"
        ds["gradient_clipping"] = 0.0


def _derive_optimizer(ds: Dict[str, Any], spec: Mapping[str, Any], origin, device: str, where: str) -> None:
    if "optimizer" in ds:
        if not same_optimizer(ds["optimizer"], spec, origin("optimizer")):
            raise ConfigError(
                f"{origin('optimizer')} = {ds['optimizer']!r} conflicts with {where}.optimizer = "
                f"{{'type': {spec['type']!r}, 'params': {dict(spec.get('params') or {})!r}}}: both are written; "
                "keep one of them"
            )
        del ds["optimizer"]  # the same optimizer: engine writes it below, in its own form
    if deepspeed_optimizer_name(spec["type"]) is None:
        return  # a torch.optim class: engine builds it and hands it to deepspeed.initialize
    # on CPU DeepSpeed's fused/CPU Adam would JIT-compile for over a minute; torch's is as fast
    ds["optimizer"] = deepspeed_optimizer_config(spec, where=f"{where}.optimizer", torch_impl=device == "cpu")


def _check_precision(ds: Dict[str, Any], origin, device: str) -> None:
    fp16 = bool((ds.get("fp16") or {}).get("enabled", False))
    bf16 = bool((ds.get("bf16") or {}).get("enabled", False))
    if fp16 and bf16:
        raise ConfigError(f"{origin('fp16.enabled')} and {origin('bf16.enabled')} are both true; choose one")
    if fp16 and device != "cuda":
        raise ConfigError(
            f"{origin('fp16.enabled')} = true, but this run's device ({device}) does not support fp16 in DeepSpeed; "
            "use bf16 or fp32 on CPU"
        )
    if "pipeline" in ds and zero_stage(ds) > 1:
        raise ConfigError(
            f"{origin('pipeline')} with {origin('zero_optimization.stage')} > 1: DeepSpeed runs pipelines with ZeRO 0-1 only"
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


def summarize(ds: Mapping[str, Any], global_batch: Optional[int] = None) -> str:
    """One line for the start-of-run report.

    Args:
        ds: a DeepSpeed config.
        global_batch: the run's samples per optimizer step; default ``ds["train_batch_size"]``
            (absent under tensor parallel, where DeepSpeed derives its own).
    """
    zero = ds.get("zero_optimization", {})
    if global_batch is None:
        global_batch = ds.get("train_batch_size", "derived by DeepSpeed")
    precision = precision_name(ds)
    optimizer: Optional[Mapping] = ds.get("optimizer")
    return (
        f"ZeRO stage {zero.get('stage', 0)}, {precision}, micro batch {ds['train_micro_batch_size_per_gpu']}, "
        f"accumulation {ds['gradient_accumulation_steps']}, global batch {global_batch}, "
        f"optimizer {optimizer['type'] + ' (DeepSpeed)' if optimizer else 'client torch.optim'}"
    )
