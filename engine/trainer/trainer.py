"""``BaseTrainer``: data, model bundle and hooks around a loop that reads like the algorithm."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

import torch

from engine import comm
from engine.data.build import build_dataset
from engine.errors import EngineError
from engine.data.loader import build_inference_loader, build_train_loader, next_batch
from engine.data.samplers import GroupedTrainingSampler, TrainingSampler, aspect_ratio_groups
from engine.log.storage import EventStorage
from engine.model.base_model import split_step_output
from engine.model.build import build_model, planned_steps
from engine.schedule.ds_config import build_ds_config, data_parallel_coords
from engine.trainer.build import BUILD_TRAINER_REGISTRY
from engine.trainer.hooks import HookBase, reduce_mean, register_hooks

logger = logging.getLogger("engine")


def run_device_type() -> str:
    """``cuda`` or ``cpu``: the accelerator the scheduler selected before DeepSpeed started."""
    from deepspeed.accelerator import get_accelerator

    return "cuda" if get_accelerator().device_name() == "cuda" else "cpu"


@BUILD_TRAINER_REGISTRY.register()
class BaseTrainer:
    """Builds the datasets, loaders and model bundle from the config, then runs the loop.

    One ``step`` is one optimizer step: ``solver.gradient_accumulation_batch`` micro-batches
    through ``model.train_micro_step``. In epoch mode (``trainer.enable_epoch_method``) the
    loop runs ``solver.max_epoch`` epochs of ``steps_per_epoch`` steps; the data stream is
    the same in both modes.

    Seed methods a subclass may override: ``before_loop``, ``iterate_after(epoch, loss_dict)``,
    ``after_loop``, ``set_collate_fn(cfg)``, ``create_dataset``, ``create_model``, ``evaluate``.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        solver = cfg.SOLVER
        self.accumulation = max(1, solver.GRADIENT_ACCUMULATION_BATCH)
        self.micro_batch = solver.TRAIN_PER_BATCH // self.accumulation
        self.collate_fn = self.set_collate_fn(cfg)
        self.train_dataset = self.create_dataset(cfg.DATALOADER.TRAIN_DATA_SET, "dataloader.train_data_set")
        val_spec = cfg.DATALOADER.VAL_DATA_SET
        self.val_dataset = self.create_dataset(val_spec, "dataloader.val_data_set") if val_spec else None
        self.ds_config = build_ds_config(cfg, world_size=comm.get_world_size(), device=run_device_type())
        self.global_batch_size = int(self.ds_config["train_batch_size"])
        # ranks of one model replica (pipeline stages, TP shards) read the same data
        self.dp_rank, self.dp_size = data_parallel_coords(self.ds_config, comm.get_rank(), comm.get_world_size())
        self.sampler = self.build_train_sampler()
        self.steps_per_epoch = self.sampler.samples_per_epoch // solver.TRAIN_PER_BATCH
        self.epoch_mode = bool(cfg.TRAINER.ENABLE_EPOCH_METHOD)
        self.max_iter = self.steps_per_epoch * solver.MAX_EPOCH if self.epoch_mode else solver.MAX_ITER
        with planned_steps(self.max_iter):
            self.model = self.create_model(cfg)
        self.start_iter = 0
        self.iter = 0
        self.step_outputs: Dict[str, torch.Tensor] = {}
        self.data_time = 0.0
        self.latest_metrics: Dict[str, float] = {}
        self.latest_logged: Dict[str, float] = {}
        self.val_loader = self._inference_loader(self.val_dataset, solver.VAL_PER_BATCH) if self.val_dataset else None
        self.hooks: List[HookBase] = register_hooks(self, self.build_hooks())
        self._data_iter: Optional[Iterator] = None

    # ---- construction (seed hooks) ----------------------------------------------------------
    def create_dataset(self, spec: Mapping[str, Any], where: str) -> Any:
        return build_dataset(spec, where=where)

    def create_model(self, cfg: Any) -> Any:
        return build_model(cfg)

    def set_collate_fn(self, cfg: Any) -> Optional[Callable]:
        """The collate function of every loader; None means torch's default."""
        return None

    def build_train_sampler(self) -> TrainingSampler:
        """The endless training sampler; grouped by aspect ratio when ``dataloader.group_sampler``."""
        common = dict(rank=self.dp_rank, world_size=self.dp_size, samples_per_step=self.cfg.SOLVER.TRAIN_PER_BATCH,
                      seed=self.cfg.SEED)
        if self.cfg.DATALOADER.GROUP_SAMPLER:
            return GroupedTrainingSampler(aspect_ratio_groups(self.train_dataset), micro_batch=self.micro_batch, **common)
        return TrainingSampler(len(self.train_dataset), **common)

    def build_hooks(self) -> List[HookBase]:
        """Default hooks plus ``trainer.hooks``, in the order they run (engine.trainer.hook_registry says why)."""
        from engine.trainer.hook_registry import default_hooks

        return default_hooks(self)

    # ---- seed callbacks ----------------------------------------------------------------------
    def before_loop(self) -> None:
        """Called once before the first step."""

    def iterate_after(self, epoch: int, loss_dict: Dict[str, torch.Tensor]) -> None:
        """Called after every optimizer step with the step's mean outputs (tensors)."""

    def after_loop(self) -> None:
        """Called once after the last step."""

    # ---- the loop ------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.iter // self.steps_per_epoch

    def train(self) -> None:
        """Run from ``start_iter`` to ``max_iter``."""
        logger.info(f"training steps {self.start_iter}..{self.max_iter} "
                    f"({self.steps_per_epoch} steps per epoch, global batch {self.global_batch_size})")
        self.sampler.start = self._sampler_position(self.start_iter)  # from global_sample_index
        self._data_iter = iter(self._train_loader())
        self.model.enable_train()
        with EventStorage() as self.storage:
            self._call_hooks("before_train")
            for self.iter in range(self.start_iter, self.max_iter):
                self._call_hooks("before_step")
                self.run_step()
                self._call_hooks("after_step")
            self._call_hooks("after_train")

    loop = train  # the seed's name

    def run_step(self) -> None:
        """One optimizer step: ``accumulation`` micro-batches through the model bundle."""
        self.data_time = 0.0
        self.model.last_step_skipped = False
        for _ in range(self.accumulation):
            start = time.perf_counter()
            data = next_batch(self._data_iter)  # shared-memory exhaustion -> EngineError
            self.data_time += time.perf_counter() - start
            for name, value in self.model.train_micro_step(data, epoch=self.epoch).items():
                self.storage.put_scalar(name, value)
        if self.model.last_step_skipped:
            self._on_nonfinite_step()
        self.step_outputs = self.storage.pop_step()

    def _on_nonfinite_step(self) -> None:
        """``solver.nan_policy``: the update of this step was not applied (on every rank); skip or stop."""
        step, count = self.iter + 1, self.model.skipped_nonfinite_steps
        self.storage.put_scalar("nonfinite_skipped_steps", float(count))
        if self.cfg.SOLVER.NAN_POLICY == "skip":
            logger.warning(f"step {step}: non-finite loss or gradients; the update was skipped on every rank "
                           f"({count} skipped so far)")
            return
        from engine.checkpoint.saver import CheckpointHook, save_checkpoint

        hook = next((h for h in self.hooks if isinstance(h, CheckpointHook)), None)
        if hook is not None:
            hook.wait()  # an asynchronous save in flight completes first (rotation must not race it)
        tag_dir = save_checkpoint(self, step, getattr(hook, "_group", None))
        raise EngineError(
            f"solver.nan_policy = 'stop': the loss or gradients became non-finite at step {step}. The update was "
            f"not applied; the last good weights are saved in {tag_dir} (--resume continues after this batch). "
            "Set solver.nan_policy = 'skip' to skip such steps instead."
        )

    def _call_hooks(self, stage: str) -> None:
        for hook in self.hooks:
            getattr(hook, stage)()

    # ---- evaluation ------------------------------------------------------------------------
    def run_evaluation(self) -> Dict[str, float]:
        """``evaluate`` on the validation loader, with the model in eval mode and no grad."""
        self.model.disable_train()
        try:
            with torch.no_grad():
                return self.evaluate(self.model, self.val_loader)
        finally:
            self.model.enable_train()

    def evaluate(self, model: Any, data_loader: Any) -> Dict[str, float]:
        """Metrics over the whole validation set (gathered across ranks); override for your own.

        The default reports the mean of what ``run_step`` returns, without stepping, each
        batch weighted by its number of samples: a per-sample mean that does not depend on how
        the set was split into batches and ranks.
        """
        sums: Dict[str, torch.Tensor] = {}
        count = torch.zeros(())
        images: Dict[str, torch.Tensor] = {}
        for batch, weight in iterate_evenly(data_loader):
            loss, scalars = split_step_output(model.eval_step(batch), type(model).__name__)  # pipeline-aware
            samples = weight * batch_size(batch)
            for name, value in dict(scalars, loss=loss).items():
                if isinstance(value, torch.Tensor) and value.dim() >= 3:  # images: the last batch is shown
                    images[name] = value
                    continue
                value = torch.as_tensor(value, dtype=torch.float64).detach().cpu() * samples
                sums[name] = sums.get(name, 0.0) + value
            count += samples
        return dict({f"val/{k}": v for k, v in reduce_mean(sums, count).items()},
                    **{f"val/{k}": v for k, v in images.items()})

    # ---- loaders -----------------------------------------------------------------------------
    def _train_loader(self) -> Any:
        data = self.cfg.DATALOADER
        return build_train_loader(
            self.train_dataset, self.sampler, micro_batch=self.micro_batch, num_workers=data.NUM_WORKERS,
            collate_fn=self.collate_fn, pin_memory=data.PIN_MEMORY, timeout=data.TIMEOUT,
            seed=self.cfg.SEED + self.dp_rank, seed_per_sample=data.SEED_PER_SAMPLE,
        )

    def _inference_loader(self, dataset: Any, batch_size: int) -> Any:
        data = self.cfg.DATALOADER
        return build_inference_loader(
            dataset, batch_size=batch_size, rank=self.dp_rank, world_size=self.dp_size,
            num_workers=data.NUM_WORKERS, collate_fn=self.collate_fn, pin_memory=data.PIN_MEMORY,
            timeout=data.TIMEOUT,
        )

    # ---- weights / resume -----------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Where the run stands after the current step; the sampler position is all the data needs."""
        done = self.iter + 1
        per_step = self.cfg.SOLVER.TRAIN_PER_BATCH
        base_iter, base_global = getattr(self, "_data_base", (0, 0))  # global_sample_index: after a resize
        return {"iteration": done, "epoch": done // self.steps_per_epoch, "samples_per_step": per_step,
                "sampler_position": self._sampler_position(done),
                "global_sample_index": base_global + (done - base_iter) * per_step * self.dp_size,
                "dp_size": self.dp_size}

    def _sampler_position(self, done: int) -> int:
        """Samples this rank consumed after ``done`` steps (shifted when the world size changed)."""
        base_iter, base_global = getattr(self, "_data_base", (0, 0))  # global_sample_index: after a resize
        return base_global // self.dp_size + (done - base_iter) * self.cfg.SOLVER.TRAIN_PER_BATCH

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue after ``state["iteration"]`` steps; ``train()`` places the sampler from it.

        global_sample_index: with a different data-parallel size the iteration is kept and the
        data stream goes on from the same global sample index, re-divided over the new ranks.
        """
        per_step = self.cfg.SOLVER.TRAIN_PER_BATCH
        if state["samples_per_step"] != per_step:  # a dp_size change is fine: global_sample_index
            from engine.errors import EngineError

            raise EngineError(f"--resume: the checkpoint was saved with solver.train_per_batch {state['samples_per_step']} "
                              f"on {state['dp_size']} data-parallel ranks; this run has {per_step} on {self.dp_size}")
        self.start_iter = self.iter = int(state["iteration"])
        total = int(state.get("global_sample_index", state["sampler_position"] * state["dp_size"]))
        self._data_base = (self.start_iter, total)
        if state["dp_size"] != self.dp_size:  # global_sample_index re-divided
            logger.info(f"resume: global sample index {total} over {self.dp_size} data-parallel ranks (was "
                        f"{state['dp_size']}): each rank starts at sample {total // self.dp_size} of its stream")

    def resume_or_load(self, resume: bool = False) -> None:
        """Resume from the newest complete checkpoint, or load ``trainer.weights``."""
        from engine.checkpoint.resume import resume_or_load

        resume_or_load(self, resume)


def batch_size(batch: Any) -> int:
    """Samples in a collated batch: the leading size of its first tensor (1 if it holds none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    children = list(batch.values()) if isinstance(batch, Mapping) else list(batch) if isinstance(batch, (list, tuple)) else []
    tensors = [c for c in children if isinstance(c, torch.Tensor)]
    nested = [c for c in children if isinstance(c, (Mapping, list, tuple))]
    return batch_size(tensors[0]) if tensors else batch_size(nested[0]) if nested else 1


def iterate_evenly(data_loader: Any) -> Iterator:
    """Yield ``(batch, 1.0)`` for this rank's batches, then ``(last_batch, 0.0)`` until all ranks are done.

    Ranks may hold one batch more than others; under ZeRO-3 every forward is a collective,
    so a rank that stopped early would hang the others. Padding batches count with weight 0.
    """
    mine = torch.tensor([len(data_loader)], dtype=torch.int64)
    counts = comm.all_gather_object(int(mine))
    batch = None
    for batch in data_loader:
        yield batch, 1.0
    for _ in range(max(counts) - int(mine)):
        if batch is None:
            raise RuntimeError("a rank got no validation batch at all; use a validation set with at least world-size samples")
        yield batch, 0.0
