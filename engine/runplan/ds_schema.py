"""Check an engine's DeepSpeed dict against DeepSpeed's own config classes, before anything starts.

DeepSpeed validates its config inside ``deepspeed.initialize``: after the job waited in the
queue, started the process group and built the model. A typo there (``zero_optimization.stag``)
ends in a pydantic ``ValidationError`` and two tracebacks. ``DeepSpeedConfig`` itself needs
no process group: without one it reads the world size as 1 (``deepspeed/runtime/config.py``
catches the failed ``dist.get_rank()``), so it can run in the config check. Engine checks
the batch arithmetic itself (it derives those three numbers for the real data-parallel size)
and hands DeepSpeed the rest.

Every problem becomes one line naming the key path as the user wrote it (with the JSON file
when the key came from ``deepspeed.config``), the value, what is expected and the closest
valid names. DeepSpeed's pydantic sections reject unknown keys themselves; the sections it
reads as plain dicts (``pipeline``, ``optimizer``, ...) and the top level would ignore a
typo silently, so they are checked against DeepSpeed's own defaults here.
"""

from __future__ import annotations

import typing
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from engine.config.defaults import DEEPSPEED_PASSTHROUGH_KEYS
from engine.errors import ConfigError
from engine.utils.quiet import quiet
from engine.utils.suggest import did_you_mean

#: names a key path (dotted, below ``deepspeed``) as the user wrote it: ``DsSources``
Origin = Callable[[str], str]

# keys engine itself reads from the pipeline section (engine/model/pipeline.py, ds_config.py)
_ENGINE_PIPELINE_KEYS = ("micro_batches", "partition_method")

# top-level scalars DeepSpeed reads with get_scalar_param, which accepts any type and fails
# (or misbehaves) much later: (accepted types, bound, whether the bound itself is allowed, what to write)
_BOOL = ((bool,), None, True, "true or false")
_SCALARS: Dict[str, Tuple[Tuple[type, ...], Optional[float], bool, str]] = {
    "train_batch_size": ((int,), 1, True, "an integer ≥ 1"),
    "train_micro_batch_size_per_gpu": ((int,), 1, True, "an integer ≥ 1"),
    "gradient_accumulation_steps": ((int,), 1, True, "an integer ≥ 1"),
    "steps_per_print": ((int,), 1, True, "an integer ≥ 1"),
    "gradient_clipping": ((int, float), 0, True, "a number ≥ 0 (0 disables it)"),
    "gradient_predivide_factor": ((int, float), 0, False, "a number > 0"),
    "wall_clock_breakdown": _BOOL,
    "memory_breakdown": _BOOL,
    "prescale_gradients": _BOOL,
    "zero_allow_untested_optimizer": _BOOL,
    "zero_force_ds_cpu_optimizer": _BOOL,
    "dump_state": _BOOL,
    "disable_allgather": _BOOL,
    "dataloader_drop_last": _BOOL,
}
_COMMUNICATION_TYPES = ("fp16", "bf16", "fp32")


def check_ds_config(ds: Mapping[str, Any], origin: Origin) -> None:
    """Run one engine's DeepSpeed dict through DeepSpeed's config classes.

    Args:
        ds: the dict ``deepspeed.initialize`` will receive (``build_ds_config``'s result).
        origin: names a dotted key path below ``deepspeed`` as the user wrote it.

    Raises:
        ConfigError: one line per problem, each naming the key path, the value, what is
            expected and the closest valid names.
    """
    problems = _top_level_problems(ds, origin) + _plain_section_problems(ds, origin)
    if not problems:
        problems = _deepspeed_problems(ds, origin)
    if problems:
        raise ConfigError("\n".join(problems))


def _top_level_problems(ds: Mapping[str, Any], origin: Origin) -> List[str]:
    problems = []
    for key, value in ds.items():
        if key not in DEEPSPEED_PASSTHROUGH_KEYS:
            problems.append(f"{origin(key)}: unknown DeepSpeed key (DeepSpeed would ignore it).{did_you_mean(key, DEEPSPEED_PASSTHROUGH_KEYS)}")
            continue
        if key in _SCALARS and not _scalar_ok(value, *_SCALARS[key][:3]):
            problems.append(f"{origin(key)}: {value!r}: expected {_SCALARS[key][3]}")
        if key in ("communication_data_type", "seq_parallel_communication_data_type") and value is not None \
                and (not isinstance(value, str) or value.lower() not in _COMMUNICATION_TYPES):
            problems.append(f"{origin(key)}: {value!r}: expected one of {', '.join(_COMMUNICATION_TYPES)} or null")
    return problems


def _scalar_ok(value: Any, types: Tuple[type, ...], bound: Optional[float], inclusive: bool) -> bool:
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        return False
    return bound is None or value > bound or (inclusive and value == bound)


def plain_section_keys() -> Dict[str, Tuple[str, ...]]:
    """Valid keys of the sections DeepSpeed reads as plain dicts, from DeepSpeed's own defaults."""
    from deepspeed.profiling import constants as flops  # deepspeed is heavy: imported when checking only
    from deepspeed.runtime import constants
    from deepspeed.runtime.activation_checkpointing.config import ACT_CHKPT_DEFAULT
    from deepspeed.runtime.config import get_pipeline_config

    flops_keys = tuple(v for k, v in vars(flops).items()
                       if k.startswith("FLOPS_PROFILER_") and not k.endswith("_DEFAULT") and isinstance(v, str))
    return {
        "pipeline": tuple(get_pipeline_config({})) + ("use_reentrant",) + _ENGINE_PIPELINE_KEYS,
        "activation_checkpointing": tuple(ACT_CHKPT_DEFAULT),
        "optimizer": (constants.TYPE, constants.OPTIMIZER_PARAMS, constants.LEGACY_FUSION),
        "scheduler": (constants.TYPE, constants.SCHEDULER_PARAMS),
        "flops_profiler": flops_keys,
        "data_types": (constants.GRAD_ACCUM_DTYPE, constants.PARAM_DTYPE, constants.BUFFER_DTYPE,
                       constants.KEEP_IN_FP32_MODULES),
    }


def _plain_section_problems(ds: Mapping[str, Any], origin: Origin) -> List[str]:
    problems = []
    for section, valid in plain_section_keys().items():
        value = ds.get(section)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            problems.append(f"{origin(section)}: {value!r}: expected a dict (a JSON object)")
            continue
        for key in value:
            if key not in valid:
                problems.append(f"{origin(f'{section}.{key}')}: unknown key.{did_you_mean(str(key), valid)} "
                                f"Valid keys here: {', '.join(valid)}")
    return problems


def _pydantic_sections() -> Dict[str, Tuple[Optional[str], type]]:
    """DeepSpeed's pydantic config classes by name, with the top-level key each one parses."""
    from deepspeed.comm.config import CommsLoggerConfig  # deepspeed is heavy: imported when checking only
    from deepspeed.compile.config import CompileConfig
    from deepspeed.monitor.config import DeepSpeedMonitorConfig
    from deepspeed.runtime.config import HybridEngineConfig
    from deepspeed.runtime.precision_config import DeepSpeedBF16Config, DeepSpeedFP16Config
    from deepspeed.runtime.tensor_parallel.config import TPTrainingConfig
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    sections = {
        "zero_optimization": DeepSpeedZeroConfig, "bf16": DeepSpeedBF16Config, "fp16": DeepSpeedFP16Config,
        "tensor_parallel": TPTrainingConfig, "comms_logger": CommsLoggerConfig, "compile": CompileConfig,
        "hybrid_engine": HybridEngineConfig,
        None: DeepSpeedMonitorConfig,  # parses tensorboard, wandb, csv_monitor, comet: its locations name the key
    }
    return {cls.__name__: (key, cls) for key, cls in sections.items()}


def _deepspeed_problems(ds: Mapping[str, Any], origin: Origin) -> List[str]:
    import pydantic  # with deepspeed, whose config classes are pydantic models
    from deepspeed.runtime.config import DeepSpeedConfig, DeepSpeedConfigError

    for key in ("zero_optimization", "bf16", "fp16", "tensor_parallel", "comms_logger", "compile", "hybrid_engine",
                "tensorboard", "wandb", "csv_monitor", "comet", "checkpoint", "data_types", "aio"):
        if key in ds and not isinstance(ds[key], Mapping):
            return [f"{origin(key)}: {ds[key]!r}: expected a dict (a JSON object)"]
    # the batch arithmetic is engine's, for the real data-parallel size (DeepSpeed would see 1)
    probe = {k: v for k, v in ds.items() if k != "train_batch_size"}
    try:
        with quiet("DeepSpeed"):  # it logs its view of a throwaway config at info level
            DeepSpeedConfig(probe)
    except pydantic.ValidationError as exc:
        return [_describe(error, exc.title, origin) for error in exc.errors()]
    except (DeepSpeedConfigError, AssertionError, ValueError, TypeError, KeyError, AttributeError) as exc:
        # DeepSpeed's own cross-key checks; their messages name DeepSpeed's keys
        return [f"deepspeed: DeepSpeed rejects this config: {exc}"]
    return []


def _describe(error: Mapping[str, Any], title: str, origin: Origin) -> str:
    """One pydantic error as ``path: value: expected ...`` with the closest names."""
    key, model = _pydantic_sections().get(title, (None, None))
    loc = [str(part) for part in error["loc"]]
    path = ".".join(([key] if key else []) + loc) or title
    if error["type"] == "extra_forbidden":
        names = _field_names(model, loc[:-1]) if model is not None else []
        hint = f" Valid keys here: {', '.join(names)}" if names else ""
        return f"{origin(path)}: unknown key.{did_you_mean(loc[-1], names)}{hint}"
    message = str(error.get("msg", "invalid value"))
    message = message.replace("Input should be ", "expected ", 1).replace("Value error, ", "", 1)
    return f"{origin(path)}: {error.get('input')!r}: {message}"


def _field_names(model: type, loc: Sequence[str]) -> List[str]:
    """Field names (and aliases) of the pydantic model found at ``loc`` below ``model``."""
    for part in loc:
        field = _field(model, part)
        nested = _model_in(field.annotation) if field is not None else None
        if nested is None:
            return []
        model = nested
    names = []
    for name, field in model.model_fields.items():
        names.append(name)
        if field.alias and field.alias != name:
            names.append(field.alias)
    return names


def _field(model: type, name: str) -> Any:
    for field_name, field in model.model_fields.items():
        if name in (field_name, field.alias):
            return field
    return None


def _model_in(annotation: Any) -> Optional[type]:
    """The pydantic model inside an annotation such as ``Optional[OffloadConfig]``."""
    import pydantic

    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
