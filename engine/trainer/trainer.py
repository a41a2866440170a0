"""``BaseTrainer``: data, model bundle and hooks around a loop that reads like the algorithm."""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import torch

from engine import comm
from engine.checkpoint.async_writer import BackgroundWriter
from engine.checkpoint.checkpointer import Checkpointer
from engine.checkpoint.hook import check_runs_last, find_hook
from engine.data.build import build_dataset
from engine.data.batch import batch_size  # also a public name here, for overrides of evaluate
from engine.errors import EngineError
from engine.data.loader import build_inference_loader, build_train_loader
from engine.data.samplers import GroupedTrainingSampler, TrainingSampler, aspect_ratio_groups
from engine.model.base_model import split_step_output
from engine.model.build import build_model
from engine.model.run_plan import current_plan
from engine.runplan.plan import GENERATOR, RunPlan, use_run_plan
from engine.sentinel.sentinel import build_sentinel, scalar_floats
from engine.trainer.registry import BUILD_TRAINER_REGISTRY
from engine.events.hooks import HookBase
from engine.events.step import Rewind
from engine.sentinel.rollback import RollbackRefused, examine_step, roll_back
from engine.events.window import reduce_mean
from engine.trainer.hook_registry import default_hooks
from engine.trainer.hooks import EvalHook, register_hooks
from engine.trainer.loop import TrainLoop
from engine.log.flops import peak_flops
from engine.log.metrics import MetricsWindow
from engine.trackers.base import RunInfo
from engine.config.node import to_plain
from engine.trainer.trainframework import TrainFrameworkTrainerSurface
from engine.utils.signature import positional_capacity

logger = logging.getLogger("engine")


@BUILD_TRAINER_REGISTRY.register()
class BaseTrainer(TrainFrameworkTrainerSurface, TrainLoop):
    """Builds the datasets, loaders, model bundle and hooks from the config, then runs ``TrainLoop``.

    ``__init__`` is a list of build steps: data (collate functions, datasets, sampler, plan),
    model bundle (``create_model``), the loop's numbers, loaders, checkpoint, hooks.

    One ``step`` is one optimizer step: ``solver.gradient_accumulation_batch`` micro-batches
    through ``model.train_micro_step``. In epoch mode (``trainer.enable_epoch_method``) the
    loop runs ``solver.max_epoch`` epochs of ``steps_per_epoch`` steps; the data stream is
    the same in both modes.

    Seed methods a subclass may override: ``before_loop``, ``iterate_after``, ``after_loop``,
    ``set_collate_fn(cfg)``, ``create_dataset``, ``create_model``, ``evaluate``, ``loop``. Where
    the seed and engine wrote a method differently, both forms work and the one a subclass
    wrote is detected from its signature or return value (see each method).

    The seed's attributes are here too: ``model``, ``train_data_loader``, ``val_data_loader``,
    ``test_data_loader``, ``checkpoint``, ``default_log_name``, ``output``, ``max_iter``,
    ``start_iter``, ``device``, ``enable_epoch_method``, ``gradient_accumulation_batch``,
    ``train_batch_size``, ``model_path``. None of them draws random numbers or touches the
    data order, so resume stays exact.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        plan = current_plan(cfg)  # the scheduler's; built here for a trainer made by hand
        self._build_data(cfg, plan)
        with use_run_plan(self.plan):
            model = self.create_model(cfg)
        batch = self.plan.batch
        TrainLoop.__init__(self, model, None, [], start_iter=0, max_iter=self.max_iter,
                           accumulation=batch.accumulation, metrics=self.build_metrics(model))
        self._build_loaders(cfg)
        self.checkpoint = self.build_checkpointer()
        self.rollbacks = 0  # solver.nan_policy 'rollback': rollbacks done in this run (checkpointed)
        self.sentinel = build_sentinel(cfg)  # bad_batches.jsonl and the spike window (solver.spike)
        self.hooks: List[HookBase] = register_hooks(self, self.build_hooks())
        check_runs_last(self.hooks)

    def build_metrics(self, model: Any) -> MetricsWindow:
        """The metrics window; with a known peak FLOP/s (``trainer.peak_tflops`` or the GPU's), the bundle counts FLOPs for MFU."""
        batch = self.plan.batch
        peak = peak_flops(self.cfg.TRAINER.PEAK_TFLOPS, self.plan.torch_device, getattr(model, "compute_dtype", torch.float32))
        if peak is not None and hasattr(model, "count_training_flops"):
            model.count_training_flops()
        return MetricsWindow(batch.global_batch, batch.accumulation * self.dp_size, peak_flops=peak, devices=self.dp_size)

    def _build_data(self, cfg: Any, plan: RunPlan) -> None:
        """Collate functions, datasets, the training sampler, and the plan completed with the epoch arithmetic."""
        self.accumulation = plan.batch.accumulation
        self.micro_batch = plan.batch.micro_batch
        self._choose_collate_fns(cfg)
        self.train_dataset, self.val_dataset, self.test_dataset = self._create_datasets(cfg)
        self.ds_config = plan.ds_config(GENERATOR)
        self.global_batch_size = plan.batch.global_batch
        # ranks of one model replica (pipeline stages, TP shards) read the same data
        self.dp_rank, self.dp_size = plan.layout.data_parallel_rank, plan.layout.data_parallel_size
        self.sampler = self.build_train_sampler()
        self.plan: RunPlan = plan.with_dataset(len(self.train_dataset), self.sampler.samples_per_epoch)
        self.steps_per_epoch = self.plan.batch.steps_per_epoch
        self.epoch_mode = self.plan.batch.epoch_mode
        self.max_iter = self.plan.batch.total_steps  # before create_model: a seed override may read it

    def _build_loaders(self, cfg: Any) -> None:
        """The three loaders; built here, iterated only in ``train()``: building one draws no random number."""
        solver = cfg.SOLVER
        self.train_data_loader = self._train_loader()
        self.val_data_loader = self._inference_loader(self.val_dataset, solver.VAL_PER_BATCH)
        self.test_data_loader = self._inference_loader(self.test_dataset, solver.TEST_PER_BATCH)

    # ---- construction (seed hooks) ----------------------------------------------------------
    def create_dataset(self, spec: Mapping[str, Any], where: Optional[str] = None) -> Any:
        """One dataset from its config dict; ``where`` is its key path, named in errors.

        The seed's form is ``create_dataset(self, cfg)`` returning ``(train, valid, test)``;
        a subclass may write either (told apart by its number of arguments), and a seed
        override's ``super().create_dataset(cfg)`` gets the triple.
        """
        if where is None and "DATALOADER" in spec:  # super().create_dataset(cfg) from a seed override
            return dataset_triple(spec, lambda one, path: build_dataset(one, where=path))
        return build_dataset(spec, where=where or "dataset")

    def _choose_collate_fns(self, cfg: Any) -> None:
        """``collate_train_fn`` / ``collate_valid_fn`` from ``set_collate_fn``, whichever form it has."""
        self.collate_train_fn: Optional[Callable] = None  # the seed's set_collate_fn sets these two
        self.collate_valid_fn: Optional[Callable] = None
        returned = self.set_collate_fn(cfg)
        if returned is not None:  # engine's form: one function for every loader the attributes leave open
            self.collate_train_fn = self.collate_train_fn or returned
            self.collate_valid_fn = self.collate_valid_fn or returned

    def _create_datasets(self, cfg: Any) -> Tuple[Any, Optional[Any], Optional[Any]]:
        if positional_capacity(self.create_dataset) == 1:  # the seed's create_dataset(cfg)
            datasets = self.create_dataset(cfg)
            if not isinstance(datasets, (tuple, list)) or len(datasets) != 3:
                raise EngineError(f"{type(self).__name__}.create_dataset(cfg) must return (train, valid, test) "
                                  f"datasets, got {type(datasets).__name__}")
            return tuple(datasets)
        return dataset_triple(cfg, self.create_dataset)

    def create_model(self, cfg: Any) -> Any:
        return build_model(cfg)

    def set_collate_fn(self, cfg: Any) -> Optional[Callable]:
        """Choose the loaders' collate functions; the default keeps torch's.

        Two forms: the seed's sets ``self.collate_train_fn`` (training loader) and
        ``self.collate_valid_fn`` (validation and test loaders) and returns nothing; engine's
        returns one function, used by every loader whose attribute is still None.
        """
        return None

    def build_train_sampler(self) -> TrainingSampler:
        """The endless training sampler; grouped by aspect ratio when ``dataloader.group_sampler``."""
        common = dict(rank=self.dp_rank, world_size=self.dp_size, samples_per_step=self.cfg.SOLVER.TRAIN_PER_BATCH,
                      seed=self.cfg.SEED, skip=self.cfg.DATALOADER.SKIP_SAMPLES)
        if self.cfg.DATALOADER.GROUP_SAMPLER:
            return GroupedTrainingSampler(aspect_ratio_groups(self.train_dataset), micro_batch=self.micro_batch, **common)
        return TrainingSampler(len(self.train_dataset), **common)

    def build_checkpointer(self) -> Checkpointer:
        """``trainer.checkpoint``: the run's ``Checkpointer``, from ``output_dir`` and ``solver``'s checkpoint keys."""
        solver = self.cfg.SOLVER
        checkpointer = Checkpointer(
            self.cfg.OUTPUT_DIR, int(solver.MAX_KEEP), zero_stage=self.plan.zero_stage,
            writer=BackgroundWriter() if solver.CHECKPOINT_ASYNC else None, seed=int(self.cfg.SEED),
            check_period=int(solver.CHECKPOINT_PERIOD),
            max_iter=int(self.plan.batch.max_epoch if self.epoch_mode else self.max_iter))
        return checkpointer.bind(self.model, self.state_dict)

    def build_hooks(self) -> List[HookBase]:
        """Default hooks plus ``trainer.hooks``, in the order they run (engine.trainer.hook_registry says why)."""
        return default_hooks(self)

    # ---- seed callbacks ----------------------------------------------------------------------
    def before_loop(self) -> None:
        """Called once before the first step."""

    def iterate_after(self, epoch: int, loss_dict: Optional[Dict[str, torch.Tensor]] = None) -> None:
        """Called after optimizer steps with the seed's loop counter (``loop_counter``).

        Two forms, told apart by how many arguments the override takes:
        ``iterate_after(self, epoch, loss_dict)`` (engine's, docs/trainer.md) runs after every optimizer
        step, with the step's mean outputs (tensors); ``iterate_after(self, epoch)`` (the
        seed's code) runs once per turn of the seed's loop: every step in iteration mode,
        once at the end of each epoch in epoch mode.
        """

    def after_loop(self) -> None:
        """Called once after the last step."""

    # ---- the loop ------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.iter // self.steps_per_epoch

    @property
    def loop_counter(self) -> int:
        """The seed's loop variable: the step (0-based) in iteration mode, the epoch in epoch mode."""
        return self.epoch if self.epoch_mode else self.iter

    @property
    def ends_loop_turn(self) -> bool:
        """Whether the current step ends one turn of the seed's loop (in epoch mode: the epoch's last step)."""
        return not self.epoch_mode or (self.iter + 1) % self.steps_per_epoch == 0

    def train(self) -> None:
        """Run from ``start_iter`` to ``max_iter`` (``TrainLoop.train`` on the training loader)."""
        logger.info(f"training steps {self.start_iter}..{self.max_iter} "
                    f"({self.steps_per_epoch} steps per epoch, global batch {self.global_batch_size})")
        self.sampler.start = self._sampler_position(self.start_iter)  # from global_sample_index
        self.data = self.train_data_loader  # a subclass may have replaced the loader after __init__
        self.model.enable_train()
        TrainLoop.train(self)

    def loop(self) -> None:
        """The seed's name of ``train``, and what the scheduler calls: a subclass may override either."""
        self.train()

    @property
    def latest_metrics(self) -> Dict[str, float]:
        """The newest evaluation's metrics, as the ``EvalHook`` holds them ({} before the first)."""
        evaluation = next((h for h in self.hooks if isinstance(h, EvalHook)), None)
        return dict(evaluation.latest) if evaluation is not None else {}

    def run_info(self) -> RunInfo:
        """What the ``trainer.loggers`` trackers learn at train start (``start_step``: the resumed step)."""
        return RunInfo(output_dir=self.cfg.OUTPUT_DIR, config=to_plain(self.cfg), plan=self.plan.to_json(),
                       name=os.path.basename(os.path.normpath(self.cfg.OUTPUT_DIR)), start_step=self.start_iter)

    def _on_nonfinite_step(self) -> None:
        """``solver.nan_policy``: the update of this step was not applied (on every rank); skip, roll back or stop."""
        self.sentinel.record_nonfinite(self)  # every policy: the step's samples to bad_batches.jsonl
        step, count = self.iter + 1, self.model.skipped_nonfinite_steps
        policy = str(self.cfg.SOLVER.NAN_POLICY).lower()
        if policy == "rollback":  # the step's outputs are read here: a rolled-back step is not logged
            bad = examine_step(self, scalar_floats(self.storage.pop_step()))
            try:
                resume_at = roll_back(self, bad, int(self.cfg.SOLVER.MAX_ROLLBACKS))
            except RollbackRefused as refused:
                self._stop_nonfinite(step, f"solver.nan_policy = 'rollback' cannot roll back: {refused}; ")
            raise Rewind(resume_at)  # the loop goes on at the reloaded step
        self.storage.put_scalar("nonfinite_skipped_steps", float(count))
        if policy == "skip":
            logger.warning(f"step {step}: non-finite loss or gradients; the update was skipped on every rank "
                           f"({count} skipped so far)")
            return
        self._stop_nonfinite(step, "solver.nan_policy = 'stop': ")

    def _stop_nonfinite(self, step: int, why: str) -> None:
        """Save the last good state (this step's update was not applied) and stop every rank."""
        # synchronous, after any save in flight completed (rotation must not race it)
        tag_dir = self.checkpoint.save_tag(self.model, self.state_dict, step, blocking=True)
        raise EngineError(
            f"{why}the loss or gradients became non-finite at step {step}. The update was "
            f"not applied; the last good weights are saved in {tag_dir} (--resume continues after this batch). "
            "Set solver.nan_policy = 'skip' to skip such steps instead, or 'rollback' to skip-list their samples."
        )

    def restart_data_at(self, step: int) -> None:
        """Restart the training data stream where ``step`` steps end (a rollback reloaded that position).

        The sampler's skip list as it is now applies; a new iterator is made over the loader
        (persistent workers are reused; what they had prefetched is dropped).
        """
        self.sampler.start = self._sampler_position(step)
        self._data_iter = iter(self.data)

    # ---- evaluation ------------------------------------------------------------------------
    def run_evaluation(self) -> Dict[str, float]:
        """``evaluate`` on the validation loader, with the model in eval mode and no grad."""
        self.model.disable_train()
        try:
            with torch.no_grad():
                return self.evaluate(self.model, self.val_data_loader)
        finally:
            self.model.enable_train()

    def evaluate(self, model: Any, data_loader: Any) -> Dict[str, float]:
        """Metrics over the whole validation set (gathered across ranks); override for your own.

        The default reports the mean of what ``run_step`` returns, without stepping, each
        batch weighted by its number of samples (by its ``num_items`` when the bundle counts
        items): a per-sample (per-item) mean that does not depend on how the set was split
        into batches and ranks.
        """
        sums: Dict[str, torch.Tensor] = {}
        count = torch.zeros(())
        images: Dict[str, torch.Tensor] = {}
        counted = getattr(model, "counts_items", False)
        for batch, weight in iterate_evenly(data_loader):
            loss, scalars = split_step_output(model.eval_step(batch), type(model).__name__)  # pipeline-aware
            samples = weight * (float(model.num_items(batch)) if counted else batch_size(batch))
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
    @property
    def val_loader(self) -> Any:
        """Engine's earlier name of ``val_data_loader``."""
        return self.val_data_loader

    def _train_loader(self) -> Any:
        data = self.cfg.DATALOADER
        return build_train_loader(
            self.train_dataset, self.sampler, micro_batch=self.micro_batch, num_workers=data.NUM_WORKERS,
            collate_fn=self.collate_train_fn, pin_memory=data.PIN_MEMORY, timeout=data.TIMEOUT,
            seed=self.cfg.SEED + self.dp_rank, seed_per_sample=data.SEED_PER_SAMPLE,
        )

    def _inference_loader(self, dataset: Any, batch_size: int) -> Any:
        """This rank's share of ``dataset`` in order, or None without a dataset."""
        if dataset is None:
            return None
        data = self.cfg.DATALOADER
        return build_inference_loader(
            dataset, batch_size=batch_size, rank=self.dp_rank, world_size=self.dp_size,
            num_workers=data.NUM_WORKERS, collate_fn=self.collate_valid_fn, pin_memory=data.PIN_MEMORY,
            timeout=data.TIMEOUT,
        )

    @property
    def checkpoint_hook(self) -> Any:
        """The ``CheckpointHook`` among ``self.hooks`` (None if a subclass's build_hooks left it out)."""
        return find_hook(self.hooks)

def dataset_triple(cfg: Any, make: Callable[[Mapping[str, Any], str], Any]) -> Tuple[Any, Optional[Any], Optional[Any]]:
    """(train, valid, test) datasets of ``cfg.DATALOADER``, each built by ``make(spec, key_path)``.

    The validation set is optional; the test set falls back to the validation set, as in the seed.
    """
    data = cfg.DATALOADER
    train = make(data.TRAIN_DATA_SET, "dataloader.train_data_set")
    valid = make(data.VAL_DATA_SET, "dataloader.val_data_set") if data.VAL_DATA_SET else None
    test = make(data.TEST_DATA_SET, "dataloader.test_data_set") if data.get("TEST_DATA_SET") else valid
    return train, valid, test


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
