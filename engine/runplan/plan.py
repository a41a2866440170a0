"""The run plan: every fact derived from the config, the launch and the device, computed once.

Why one object: the DeepSpeed config, the device, the ZeRO stage, the parallel sizes and
the batch arithmetic used to be derived again wherever they were needed (scheduler,
trainer, model bundle, each discriminator, checkpoints), and the copies drifted: the file
written as ``ds_config.json`` was not what DeepSpeed ran with. Now the scheduler builds a
``RunPlan`` before anything is constructed; the trainer, the model bundles, checkpoints and
export read it, and ``output_dir/ds_config.json`` / ``plan.json`` are written from it.

Each engine's DeepSpeed dict (``plan.ds_config("generator")``, ``plan.ds_config("discriminator.d")``)
is exactly what ``deepspeed.initialize`` receives. User code that keeps the seed's
``__init__(self, cfg)`` signature reads the plan of the run being built with
``get_run_plan()`` (as detectron2's code reads its event storage with ``get_event_storage()``)::

    from engine.runplan.plan import get_run_plan

    class MyModel(BaseModel):
        def __init__(self, cfg):
            super().__init__(cfg)
            plan = get_run_plan()
            self.warmup = plan.batch.total_steps // 10

This module imports neither the trainer nor the model (nor torch or DeepSpeed), so
``engine plan`` can build a plan for any world size without starting anything.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from engine.config.checks import discriminator_plan
from engine.config.provenance import Provenance
from engine.errors import ConfigError, EngineError
from engine.runplan.ds_file import is_written
from engine.runplan.ds_config import (autotp_size, build_ds_config, model_parallel_size, pipeline_stages,
                                       precision_name, summarize, write_ds_config, zero_stage)
from engine.utils.fileio import atomic_write_text

GENERATOR = "generator"
#: engine name of discriminator ``name``: also its checkpoint folder and ``--engine`` value
D_PREFIX = "discriminator."

_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

#: DeepSpeed 0.19 defaults that change what a run does, written into every plan that enables
#: the section so that the plan (and ``ds_config.json``) says what ran; a unit test holds
#: them equal to DeepSpeed's own config classes
DEEPSPEED_DEFAULTS = {"bf16": {"check_grad_overflow": True, "immediate_grad_update": False}}


@dataclass(frozen=True)
class ParallelLayout:
    """How the ranks split the work, and where this rank sits.

    DeepSpeed lays pipeline ranks out stage-major (``PipeDataParallelTopology``: rank =
    stage × replicas + replica), so a replica's stages are ``replicas`` apart; AutoTP's
    tensor-parallel ranks are consecutive. Ranks of one replica read the same batches.
    """

    world_size: int
    nodes: int
    rank: int
    local_rank: int
    data_parallel_size: int
    data_parallel_rank: int
    pipeline_stages: int
    pipeline_stage: int
    tensor_parallel_size: int
    tensor_parallel_rank: int

    @classmethod
    def of(cls, ds: Mapping[str, Any], *, rank: int, world_size: int, nodes: int, local_rank: int) -> "ParallelLayout":
        tp, pp = autotp_size(ds), pipeline_stages(ds)
        replicas = max(1, world_size // model_parallel_size(ds))
        if pp > 1:
            dp_rank, stage, tp_rank = rank % replicas, rank // replicas, 0
        else:
            dp_rank, stage, tp_rank = rank // tp, 0, rank % tp
        return cls(world_size, nodes, rank, local_rank, replicas, dp_rank, pp, stage, tp, tp_rank)


@dataclass(frozen=True)
class BatchPlan:
    """The batch arithmetic of one optimizer step, and of an epoch once the data set size is known.

    ``samples_per_step`` (``solver.train_per_batch``) is what one data-parallel rank consumes per
    optimizer step: ``accumulation`` micro-batches of ``micro_batch``.
    """

    samples_per_step: int
    micro_batch: int
    accumulation: int
    global_batch: int
    epoch_mode: bool
    max_epoch: int
    max_iter: int
    dataset_size: Optional[int] = None
    samples_per_epoch: Optional[int] = None  # per data-parallel rank, whole steps only
    steps_per_epoch: Optional[int] = None
    unused_per_epoch: Optional[int] = None  # samples no rank reads in an epoch

    @property
    def total_steps(self) -> Optional[int]:
        """Optimizer steps of the run; in epoch mode known only once the data set size is."""
        if not self.epoch_mode:
            return self.max_iter
        return None if self.steps_per_epoch is None else self.steps_per_epoch * self.max_epoch


@dataclass(frozen=True)
class RunPlan:
    """Everything the run derives from config + launch + device; frozen, built by ``build_run_plan``.

    Attributes:
        device: ``"cuda"`` or ``"cpu"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``; ``compute_dtype`` names the torch dtype.
        zero_stage: the ZeRO stage of every engine (0-3).
        offload_optimizer / offload_param: ``"none"``, ``"cpu"`` or ``"nvme"``.
        layout: data/pipeline/tensor-parallel sizes and this rank's coordinates.
        batch: micro batch, accumulation, global batch, steps.
        provenance: where each config value came from (empty when the plan was built from a dict).
        notes: warnings worth a user's attention, each said once when the run starts.
    """

    device: str
    precision: str
    zero_stage: int
    offload_optimizer: str
    offload_param: str
    layout: ParallelLayout
    batch: BatchPlan
    engine_json: Tuple[Tuple[str, str], ...]  # (engine name, its DeepSpeed dict as JSON): immutable
    provenance: Provenance = field(default_factory=Provenance)
    notes: Tuple[str, ...] = ()

    @property
    def engine_names(self) -> List[str]:
        """``generator`` first, then ``discriminator.<name>`` in config order."""
        return [name for name, _ in self.engine_json]

    def ds_config(self, engine: str = GENERATOR) -> Dict[str, Any]:
        """A fresh copy of ``engine``'s DeepSpeed config, exactly as ``deepspeed.initialize`` receives it."""
        for name, text in self.engine_json:
            if name == engine:
                return json.loads(text)
        raise EngineError(f"the run plan has no engine {engine!r}; it has {', '.join(self.engine_names)}")

    @property
    def ds_configs(self) -> Dict[str, Dict[str, Any]]:
        """Engine name → its DeepSpeed config (fresh copies)."""
        return {name: json.loads(text) for name, text in self.engine_json}

    @property
    def compute_dtype(self) -> str:
        """The torch dtype name the networks run in (``"bfloat16"`` under bf16)."""
        return _DTYPE_NAMES[self.precision]

    @property
    def torch_device(self) -> str:
        """This rank's device as torch names it: ``"cuda:<local rank>"`` or ``"cpu"``."""
        return f"cuda:{self.layout.local_rank}" if self.device == "cuda" else "cpu"

    @property
    def pipelined(self) -> bool:
        return self.layout.pipeline_stages > 1

    def with_dataset(self, dataset_size: int, samples_per_epoch: int) -> "RunPlan":
        """This plan with the epoch arithmetic of a training set of ``dataset_size`` samples.

        Args:
            dataset_size: samples in the training set.
            samples_per_epoch: what the sampler yields per data-parallel rank per epoch (whole steps).
        """
        batch = self.batch
        steps = samples_per_epoch // batch.samples_per_step
        unused = dataset_size - samples_per_epoch * self.layout.data_parallel_size
        batch = replace(batch, dataset_size=dataset_size, samples_per_epoch=samples_per_epoch,
                        steps_per_epoch=steps, unused_per_epoch=unused)
        notes = self.notes
        if unused > 0:
            notes = notes + (f"{unused} of {dataset_size} training samples are left unused each epoch: "
                             f"{self.layout.data_parallel_size} data-parallel ranks × {steps} steps × "
                             f"solver.train_per_batch {batch.samples_per_step} = "
                             f"{samples_per_epoch * self.layout.data_parallel_size}",)
        return replace(self, batch=batch, notes=notes)

    def summary(self) -> str:
        """One line for the start-of-run log."""
        return summarize(self.ds_config(GENERATOR), global_batch=self.batch.global_batch)

    def to_json(self) -> Dict[str, Any]:
        """The plan as ``plan.json`` holds it."""
        return {
            "device": self.device, "precision": self.precision, "compute_dtype": self.compute_dtype,
            "zero_stage": self.zero_stage, "offload_optimizer": self.offload_optimizer,
            "offload_param": self.offload_param, "layout": asdict(self.layout),
            "batch": dict(asdict(self.batch), total_steps=self.batch.total_steps),
            "engines": self.ds_configs, "notes": list(self.notes), "provenance": self.provenance.to_json(),
        }


def build_run_plan(cfg: Mapping[str, Any], *, rank: int, world_size: int, device: str, nodes: int = 1,
                   local_rank: Optional[int] = None,
                   provenance: Optional[Provenance] = None,
                   layer_specs: Optional[Mapping[str, Sequence[Mapping[str, Any]]]] = None) -> RunPlan:
    """The plan of one rank of a run; raises ConfigError for what no run could honour.

    Args:
        cfg: the validated framework config.
        rank: this process's global rank (0 for ``engine plan``).
        world_size: processes in the job.
        device: ``"cuda"`` or ``"cpu"`` (``engine.launch.select_device``).
        nodes: machines in the job (shown in the layout).
        local_rank: this process's rank on its machine (its GPU); default ``rank``.
        provenance: where each config value came from (``engine.config.provenance.trace_config``).
        layer_specs: engine name → the AutoTP ``layer_specs`` its network class declares
            (``autotp_layer_specs``); used under tensor parallel when the config gives no
            ``partition_config``.

    Returns:
        The frozen plan.
    """
    local_rank = rank if local_rank is None else local_rank
    engines = [(GENERATOR, None, "solver.generator")]
    engines += [(D_PREFIX + name, solver, where) for name, _, solver, where in discriminator_plan(cfg)]
    configs: List[Tuple[str, str]] = []
    for name, solver, where in engines:
        ds = build_ds_config(cfg, world_size=world_size, device=device, solver=solver, where=where)
        ds = _as_initialize_receives(ds, (layer_specs or {}).get(name))
        configs.append((name, json.dumps(ds, sort_keys=True)))
    generator = json.loads(configs[0][1])
    solver = cfg["solver"]
    accumulation = int(generator["gradient_accumulation_steps"])
    micro = int(generator["train_micro_batch_size_per_gpu"])
    layout = ParallelLayout.of(generator, rank=rank, world_size=world_size, nodes=nodes, local_rank=local_rank)
    if str(solver["nan_policy"]).lower() == "rollback" and layout.pipeline_stages > 1:
        raise ConfigError(f"solver.nan_policy = 'rollback' with a pipeline of {layout.pipeline_stages} stages: "
                          "finding the samples of a bad step re-runs run_step on each one, which a pipeline does "
                          "not call; expected 'stop' or 'skip' here")
    batch = BatchPlan(samples_per_step=int(solver["train_per_batch"]), micro_batch=micro, accumulation=accumulation,
                      global_batch=micro * accumulation * layout.data_parallel_size,
                      epoch_mode=bool(cfg["trainer"]["enable_epoch_method"]), max_epoch=epochs_to_train(cfg),
                      max_iter=int(solver["max_iter"]))
    zero = generator.get("zero_optimization") or {}
    return RunPlan(
        device=device, precision=precision_name(generator), zero_stage=zero_stage(generator),
        offload_optimizer=_offload_device(zero, "offload_optimizer"), offload_param=_offload_device(zero, "offload_param"),
        layout=layout, batch=batch, engine_json=tuple(configs), provenance=provenance or Provenance(),
        notes=tuple(_notes(cfg, generator, batch)),
    )


def _as_initialize_receives(ds: Dict[str, Any], specs: Optional[Sequence[Mapping[str, Any]]]) -> Dict[str, Any]:
    """The last adjustments before ``deepspeed.initialize``, made here so that what is written is what ran.

    The ZeRO stage and ``DEEPSPEED_DEFAULTS`` are written explicitly (``gradient_clipping``
    already is: ``build_ds_config`` turns DeepSpeed's default of 1.0 into engine's "off").

    Under AutoTP: the network's declared ``layer_specs`` become ``partition_config`` when the
    config has none, and ``train_batch_size`` is left out. Why the latter: with TP groups made
    from the config (no ``mpu``), DeepSpeed's batch check counts every rank as data parallel
    (``train_batch_size == micro × accumulation × world size``), while engine's value counts
    replicas; left out, DeepSpeed derives its own, and gradients are still averaged over the
    real data-parallel group.
    """
    ds.setdefault("zero_optimization", {}).setdefault("stage", 0)
    for section, defaults in DEEPSPEED_DEFAULTS.items():
        if (ds.get(section) or {}).get("enabled", False):
            ds[section] = dict(defaults, **ds[section])
    tp = dict(ds.get("tensor_parallel") or {})
    if autotp_size(ds) <= 1:
        return ds
    if specs and "partition_config" not in tp and "preset_model" not in tp:
        tp["partition_config"] = {"use_default_specs": False, "layer_specs": [dict(s) for s in specs]}
        ds["tensor_parallel"] = tp
    ds.pop("train_batch_size", None)
    return ds


def _offload_device(zero: Mapping[str, Any], key: str) -> str:
    return str((zero.get(key) or {}).get("device", "none") or "none")


def epochs_to_train(cfg: Mapping[str, Any]) -> int:
    """Epochs of an epoch-mode run: ``solver.max_epoch``, or a seed-era config's ``solver.max_iter``.

    TrainFramework's epoch mode ran ``solver.max_iter`` epochs (it had no ``max_epoch``); its
    configs therefore set ``max_iter`` and nothing else. Reading that as engine's one default
    epoch would shorten the run without a word, so a config that wrote ``max_iter`` but not
    ``max_epoch`` is read the seed's way (and ``_notes`` says so).
    """
    solver = cfg["solver"]
    if _epochs_from_max_iter(cfg):
        return int(solver["max_iter"])
    return int(solver["max_epoch"])


def _epochs_from_max_iter(cfg: Mapping[str, Any]) -> bool:
    return (bool(cfg["trainer"]["enable_epoch_method"]) and is_written(cfg, "solver.max_iter")
            and not is_written(cfg, "solver.max_epoch"))


def _notes(cfg: Mapping[str, Any], ds: Mapping[str, Any], batch: BatchPlan) -> List[str]:
    """Warnings that matter, known before the data is loaded."""
    notes = []
    if _epochs_from_max_iter(cfg):
        notes.append(f"trainer.enable_epoch_method: solver.max_iter {batch.max_epoch} counts epochs, as in "
                     f"TrainFramework (solver.max_epoch is not set): training {batch.max_epoch} epochs")
    per_batch = int(cfg["solver"]["train_per_batch"])
    if per_batch % batch.accumulation:
        notes.append(f"solver.train_per_batch {per_batch} is not a multiple of solver.gradient_accumulation_batch "
                     f"{batch.accumulation}: each step reads {batch.micro_batch * batch.accumulation} samples per rank")
    return notes


# ---- the plan of the run being built -------------------------------------------------------------
_ACTIVE: List[RunPlan] = []


@contextlib.contextmanager
def use_run_plan(plan: RunPlan) -> Iterator[RunPlan]:
    """Make ``plan`` the one ``get_run_plan()`` returns inside the block (blocks nest)."""
    _ACTIVE.append(plan)
    try:
        yield plan
    finally:
        _ACTIVE.pop()


def get_run_plan() -> RunPlan:
    """The plan of the run being built or trained.

    Raises:
        EngineError: outside a run (no scheduler, trainer or ``use_run_plan`` block is active).
    """
    if not _ACTIVE:
        raise EngineError("get_run_plan(): no run plan is active; call it while BaseScheduler / BaseTrainer "
                          "builds the run, or inside `with use_run_plan(build_run_plan(cfg, ...))`")
    return _ACTIVE[-1]


def active_run_plan() -> Optional[RunPlan]:
    """The active plan, or None outside a run."""
    return _ACTIVE[-1] if _ACTIVE else None


def write_plan_files(plan: RunPlan, output_dir: str) -> List[str]:
    """``ds_config.json`` (the generator's), ``ds_config.<engine>.json`` per discriminator, and ``plan.json``.

    Returns:
        The paths written.
    """
    paths = []
    for name, ds in plan.ds_configs.items():
        path = os.path.join(output_dir, "ds_config.json" if name == GENERATOR else f"ds_config.{name}.json")
        write_ds_config(ds, path)
        paths.append(path)
    path = os.path.join(output_dir, "plan.json")
    atomic_write_text(path, json.dumps(plan.to_json(), indent=2, sort_keys=True))
    return paths + [path]
