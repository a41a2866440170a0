"""Checks of registry names and constructor arguments that can run before anything starts.

Validation of the config file itself knows nothing of the user's classes. Once the user's
modules are imported (the training script did that), every registry name the config uses
and every constructor's arguments can be checked: transforms, losses, datasets, networks,
the client optimizer and scheduler, and, per engine (the generator and each discriminator),
the DeepSpeed dict against DeepSpeed's own schema and the optimizer and scheduler DeepSpeed
will build. A misspelled key fails in seconds, with its path as written, instead of after
the job waited in the queue and set up the process group, the logs and the model.
"""

from __future__ import annotations

from typing import Any, Mapping

from engine.checkpoint.preempt import signal_numbers
from engine.config.checks import discriminator_plan
from engine.errors import ConfigError
from engine.runplan.ds_constructors import check_deepspeed_optimizer, check_deepspeed_scheduler
from engine.runplan.ds_file import deepspeed_side, is_written
from engine.runplan.ds_schema import check_ds_config
from engine.runplan.plan import D_PREFIX, GENERATOR, build_run_plan
from engine.utils.registry import check_signature
import engine.transforms  # noqa: F401  (registers the transforms; engine.trainer.build registers BaseTrainer)
from engine.data.build import BUILD_DATASET_REGISTRY
from engine.model.build import BUILD_MODEL_REGISTRY, BUILD_NETWORK_REGISTRY
from engine.trainer.build import BUILD_TRAINER_REGISTRY
from engine.transforms.build import build_transforms
from engine.loss.pipe import LossKeyCompose
from engine.solver import build_optimizer, deepspeed_optimizer_name, lr_scheduler_factory

_DATA_SETS = ("train_data_set", "val_data_set", "test_data_set")


class _NoSamples:
    """Stands in for a dataset so that mix transforms (mosaic) can be constructed for checking."""

    def __len__(self) -> int:
        return 1

    def get_results(self, index: int) -> dict:
        raise RuntimeError("preflight dataset holds no samples")


def preflight(cfg: Any, *, world_size: int = 1, device: str = "cpu") -> None:
    """Resolve every registry name in ``cfg`` and check every constructor's arguments.

    Builds what is cheap to build from plain config (transforms, losses, client optimizers
    and schedulers), binds the arguments of what is not (datasets, networks, DeepSpeed's
    own optimizer) to the signature, and runs each engine's DeepSpeed dict through
    DeepSpeed's config classes.

    Args:
        cfg: the validated config (after ``welcome_ds_file``).
        world_size: processes the job will run; the DeepSpeed batch arithmetic depends on it.
        device: ``"cuda"`` or ``"cpu"``; decides which optimizer class DeepSpeed builds.

    Raises:
        engine.errors.EngineError: naming the key path of the first problem found.
    """
    BUILD_TRAINER_REGISTRY.get_at(cfg.TRAINER.NAME, "trainer")
    BUILD_MODEL_REGISTRY.get_at(cfg.TRAINER.MODEL.NAME, "trainer.model")
    networks = [(cfg.TRAINER.MODEL.GENERATOR, "trainer.model.generator")] + [
        (network, _network_path(cfg, index)) for index, (_, network, _, _) in enumerate(discriminator_plan(cfg))]
    for spec, where in networks:
        _check_by_signature(BUILD_NETWORK_REGISTRY, spec, where)
    for key in _DATA_SETS:
        spec = cfg.DATALOADER.get(key)
        if not spec:
            continue
        where = f"dataloader.{key}"
        _check_by_signature(BUILD_DATASET_REGISTRY, spec, where)
        transformer = spec.get("transformer")
        if transformer is not None and not isinstance(transformer, (list, tuple)):
            raise ConfigError(f"{where}.transformer: expected a list of transform dicts, got {transformer!r}")
        build_transforms(transformer or [], where=f"{where}.transformer", dataset=_NoSamples())
    signal_numbers(cfg.SOLVER.SAVE_ON_SIGNAL)
    _check_losses(cfg)
    _check_engines(cfg, world_size, device)


def _check_engines(cfg: Any, world_size: int, device: str) -> None:
    """Per engine (the generator, each discriminator): its solver's builds and its DeepSpeed dict.

    The dicts are the run plan's, as ``deepspeed.initialize`` will receive them.
    """
    _, origin = deepspeed_side(cfg)
    plan = build_run_plan(cfg, rank=0, world_size=world_size, device=device)
    engines = [(GENERATOR, None, "solver.generator")]
    engines += [(D_PREFIX + name, net_solver, path) for name, _, net_solver, path in discriminator_plan(cfg)]
    for engine, net_solver, where in engines:
        solver = cfg.SOLVER.GENERATOR if net_solver is None else net_solver
        _check_optimizer(solver, where)
        _check_lr_scheduler(cfg, solver, where)
        ds = plan.ds_config(engine)
        check_ds_config(ds, origin)
        check_deepspeed_optimizer(ds, _optimizer_path(cfg, where, origin))
        check_deepspeed_scheduler(ds, origin("scheduler"))


def _network_path(cfg: Any, index: int) -> str:
    """The path of discriminator ``index``'s network as written: one dict, or ``[i].params`` of a list."""
    spec = cfg.TRAINER.MODEL.DISCRIMINATOR
    return "trainer.model.discriminator" if isinstance(spec, Mapping) else f"trainer.model.discriminator[{index}].params"


def _check_by_signature(registry: Any, spec: Mapping[str, Any], where: str) -> None:
    """Resolve ``spec["name"]`` and bind the other keys to its constructor, without building it.

    Datasets read files and networks allocate weights: the signature is what can be checked
    for free. A constructor taking ``**kwargs`` accepts anything here, and a required parameter
    the config leaves out is not an error: the model or data code may pass it itself.
    """
    cls = registry.get_at(spec["name"], where)
    check_signature(cls, {k: v for k, v in spec.items() if k != "name"}, where=where, require_all=False)


def _check_losses(cfg: Any) -> None:
    """Build the losses of ``trainer.model.loss`` when it has the ``LossKeyCompose`` form.

    ``{key: [dict(name=<LOSS_ARCH_REGISTRY name>, ...), ...]}`` is how engine's and the seed's
    models read it; a section in another form belongs to the user's model and is left to it.
    Errors name the path the user wrote (``trainer.loss`` is the seed's spelling).
    """
    spec = cfg.TRAINER.MODEL.LOSS
    if not _is_loss_key_form(spec):
        return
    seed_spelling = is_written(cfg, "trainer.loss") and not is_written(cfg, "trainer.model.loss")
    LossKeyCompose(spec, where="trainer.loss" if seed_spelling else "trainer.model.loss")


def _is_loss_key_form(spec: Any) -> bool:
    def entry(item: Any) -> bool:
        if isinstance(item, (list, tuple)):  # a group of losses summed on one input
            return bool(item) and all(isinstance(i, Mapping) and "name" in i for i in item)
        return isinstance(item, Mapping) and "name" in item

    if not isinstance(spec, Mapping) or not spec:
        return False
    return all(entry(v) if isinstance(v, Mapping) else isinstance(v, (list, tuple)) and bool(v) and all(map(entry, v))
               for v in spec.values())


def _optimizer_path(cfg: Any, where: str, origin: Any) -> str:
    """Where the optimizer DeepSpeed builds was written: the solver, or the DeepSpeed file it was taken from."""
    path = f"{where}.optimizer"
    if where == "solver.generator" and not is_written(cfg, path) and "optimizer" in deepspeed_side(cfg)[0]:
        return origin("optimizer")
    return path


def _check_optimizer(solver: Mapping[str, Any], where: str) -> None:
    """Build a client optimizer on a dummy parameter; DeepSpeed's own types are checked by ds_config."""
    import torch

    spec = solver["optimizer"]
    if deepspeed_optimizer_name(spec["type"]) is None:
        build_optimizer(spec, [torch.nn.Parameter(torch.zeros(1))], where=f"{where}.optimizer")


def _check_lr_scheduler(cfg: Any, solver: Mapping[str, Any], where: str) -> None:
    """Build the scheduler on a throwaway optimizer, when the run length is already known.

    In epoch mode the length depends on the dataset, so a scheduler that leaves ``max_iter``
    to engine is checked when the model is built instead.
    """
    spec = solver["lr_scheduler"]
    if cfg.TRAINER.ENABLE_EPOCH_METHOD and "max_iter" not in (spec.get("params") or {}):
        return
    lr_scheduler_factory(spec, where=f"{where}.lr_scheduler", defaults={"max_iter": cfg.SOLVER.MAX_ITER})
