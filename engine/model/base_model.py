"""``BaseModel``: the generator network, its optimizer and LR schedule, as one DeepSpeed engine."""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Dict, Mapping, Optional, Sequence, Tuple

import torch

from engine.errors import EngineError
from engine.events.step import StepResult
from engine.model.build import build_network
from engine.model.ema import build_ema
from engine.model.precision import compute_dtype, to_device
from engine.model.engine_wrap import StepOutcome, backward_step, wrap_network
from engine.model.item_norm import ItemWeights, WeightedLoss
from engine.log.flops import TrainingFlopsCounter
from engine.model.run_plan import current_plan
from engine.model.zero_init import construction_context  # zero_init
from engine.model import pipeline as pipe  # pipeline
from engine.model.tensor_parallel import check_network_specs, layer_specs  # tensor parallel
from engine.model.activation_checkpointing import activation_checkpointing_requested, apply_activation_checkpointing
from engine.model.trainframework import TrainFrameworkModelSurface
from engine.runplan.plan import GENERATOR, RunPlan


class BaseModel(TrainFrameworkModelSurface):
    """The model bundle: what the user subclasses and registers in ``BUILD_MODEL_REGISTRY``.

    The user writes ``run_step`` (forward + loss, returning the loss tensor or
    ``dict(loss=..., **scalars)``) and ``generator`` (inference). Backward, gradient
    accumulation, clipping, optimizer and LR steps happen here, through the DeepSpeed engine
    ``self.g_model``, so user code is the same at every ZeRO stage.

    The seed's members (``model(data, epoch=...)``, ``get_state_dict`` / ``load_state_dict``,
    ``get_addition_state_dict`` / ``load_addition_state_dict``, ``g_scheduler``) come from
    ``engine.model.trainframework.TrainFrameworkModelSurface``.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.plan: RunPlan = current_plan(cfg)  # device, DeepSpeed configs, steps: derived once, read here
        self.device = torch.device(self.plan.torch_device)
        self.ds_config = self.plan.ds_config(GENERATOR)
        with construction_context(self.ds_config, cfg.DEEPSPEED.ZERO_INIT):  # zero_init: ZeRO-3 partitions as it builds
            network = self.create_model(cfg.TRAINER.MODEL.GENERATOR)
        if activation_checkpointing_requested(cfg.TRAINER.MODEL.ACTIVATION_CHECKPOINTING, self.ds_config):
            apply_activation_checkpointing(network, self.ds_config.get("activation_checkpointing"))
        pipelined = self.plan.pipelined  # pipeline: DeepSpeed's engine owns the whole step
        weighted_loss = None
        if pipelined:
            self.pipeline_key_map = pipe.layer_key_map(network)  # pipeline: export maps layer keys back
            weighted_loss = WeightedLoss(pipe.resolve_loss_fn(network, self))  # num_items: weighs each micro-batch
            network = pipe.to_pipeline_module(network, self.ds_config, weighted_loss)
        check_network_specs(self.ds_config, network, "trainer.model.generator")  # tensor parallel
        wrapped = wrap_network(network, cfg.SOLVER.GENERATOR, self.ds_config, where="solver.generator",
                               max_iter=self.planned_steps)
        self.g_model = wrapped.engine
        self.g_optimizer = wrapped.optimizer
        self.g_lr_scheduler = wrapped.lr_scheduler
        self._clip = cfg.SOLVER.GENERATOR.CLIP_GRADIENTS
        self.skipped_nonfinite_steps = 0  # optimizer steps dropped for NaN/inf gradients (solver.nan_policy)
        self.last_step_skipped = False  # whether the latest micro-step's optimizer update was dropped
        # the loop counter of the latest training step; evaluation hands it to run_step too, since
        # seed-era run_step code computes with epoch (epoch % n) and never saw None
        self.last_epoch: Any = None
        self.ema = build_ema(self.g_model, cfg.SOLVER.EMA)  # None when solver.ema.enabled is off
        self._inference = contextlib.ExitStack()
        split = getattr(self, "pipeline_inputs", pipe.default_pipeline_inputs)  # pipeline: (inputs, labels) of a batch
        self.pipeline = pipe.PipelineStep(self.g_model, split, self.device) if pipelined else None
        self.flops: Optional[TrainingFlopsCounter] = None  # set by count_training_flops (MFU)
        # num_items: the step's per-micro-batch loss weights (None when run_step's losses are not counted)
        self.item_weights: Optional[ItemWeights] = None
        if type(self).num_items is not BaseModel.num_items:
            self.item_weights = ItemWeights(int(self.g_model.gradient_accumulation_steps()),
                                            int(self.g_model.dp_world_size), self.g_model.data_parallel_group,
                                            self.device)
            if weighted_loss is not None:
                weighted_loss.weights = self.item_weights

    # ---- what users override --------------------------------------------------------------
    def create_model(self, params: Mapping[str, Any]) -> torch.nn.Module:
        """Build the generator network from ``trainer.model.generator`` (seed hook)."""
        return build_network(params, where="trainer.model.generator")

    def run_step(self, data: Any, *, epoch: Any = None, **kwargs: Any) -> Any:
        """Forward one micro-batch and return its loss (a tensor or ``dict(loss=..., **scalars)``).

        ``epoch`` is the seed's loop counter: the step (0-based) in iteration mode, the epoch in
        epoch mode; under evaluation, that of the latest training step.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement run_step(data, *, epoch=None, **kwargs)")

    def generator(self, data: Any) -> Any:
        """Inference on ``data``; called under ``torch.no_grad`` by evaluation."""
        raise NotImplementedError(f"{type(self).__name__} must implement generator(data)")

    def num_items(self, data: Any) -> Any:
        """How many items ``run_step``'s loss on ``data`` is a mean over (override to have losses weighed by it).

        E.g. the tokens that are not padding, ``(data["labels"] != -100).sum()``, or the pixels
        that are not ignored: an int or a 0-dim tensor, counted from the batch alone (it is
        called for every micro-batch of a step before the first forward). When overridden,
        each micro-batch's loss is weighted by its count over the count of the whole step
        (all micro-batches, all data-parallel ranks), so the update is one big batch's
        per-item mean whatever the accumulation and world size (``engine.model.item_norm``);
        the logged loss is this rank's per-item mean. Not overridden: every micro-batch
        weighs the same, as DeepSpeed does.
        """
        return None

    # ---- what the trainer calls -----------------------------------------------------------
    @property
    def counts_items(self) -> bool:
        """Whether losses are weighed by ``num_items``: the trainer then hands over each step's micro-batches first."""
        return self.item_weights is not None

    def begin_accumulation(self, batches: Sequence[Any]) -> None:
        """The micro-batches of one optimizer step, before the first runs: their item counts are reduced.

        Every data-parallel rank calls it at the start of the same step (one all-reduce).
        """
        if self.item_weights is None:
            return
        counts = []
        for position, batch in enumerate(batches):
            count = self.num_items(batch)
            if count is None or (isinstance(count, torch.Tensor) and count.numel() != 1):
                raise EngineError(f"{type(self).__name__}.num_items returned {count!r} for micro-batch {position} of "
                                  "a step; expected an int or a one-element tensor")
            counts.append(count)
        self.item_weights.plan(counts)

    def train_micro_step(self, data: Any, *, epoch: Any = None) -> StepResult:
        """Forward, backward and (at an accumulation boundary) optimizer step for one micro-batch.

        Returns:
            What to log, whether the update was dropped as non-finite (``solver.nan_policy``)
            and whether this micro-batch ended the accumulation window.
        """
        self.last_step_skipped = False
        if self.pipeline is not None:  # pipeline: micro-batches queue up; the step's last runs them all
            outputs = self.pipeline.train_micro(data)
            if outputs is not None and self.ema is not None:
                self.ema.update()
            return StepResult(outputs or {}, skipped=False, boundary=outputs is not None)
        self.last_epoch = epoch
        with self.flops.counting(data) if self.flops is not None else contextlib.nullcontext():
            output = self.run_step(data, epoch=epoch)
        loss, scalars = split_step_output(output, type(self).__name__)
        logged = loss.detach()
        if self.item_weights is not None and self.item_weights.pending:  # num_items: weighed by the step's count
            backward_weight, logged_weight = self.item_weights.next()
            loss, logged = loss.float() * backward_weight, logged.float() * logged_weight
        outcome = backward_step(self.g_model, loss, self._clip)
        self.note_step(outcome)
        if outcome.boundary and not outcome.skipped and self.ema is not None:
            self.ema.update()  # a skipped (non-finite) step leaves the average untouched
        return StepResult({"loss": logged, **scalars}, skipped=outcome.skipped, boundary=outcome.boundary)

    def count_training_flops(self) -> None:
        """Count the first training micro-batch's FLOPs as it runs, for MFU (``engine.log.flops``).

        Not under a pipeline, whose forward runs inside DeepSpeed's ``train_batch``.
        """
        if self.pipeline is None:
            self.flops = TrainingFlopsCounter()

    @property
    def training_flops_per_sample(self) -> Optional[float]:
        """Training FLOPs per sample on this rank (3x the forward's), once counted; else None."""
        return self.flops.per_sample if self.flops is not None else None

    def note_step(self, outcome: StepOutcome) -> None:
        """Count an optimizer step dropped for non-finite gradients, once per micro-step (solver.nan_policy).

        A GAN micro-step steps several engines; they share one count.
        """
        if outcome.skipped and not self.last_step_skipped:
            self.skipped_nonfinite_steps += 1
        self.last_step_skipped = self.last_step_skipped or outcome.skipped

    def eval_step(self, data: Any) -> Any:
        """What evaluation records for one batch: ``run_step``'s output; the pipeline's loss under a pipeline."""
        return self.run_step(data, epoch=self.last_epoch) if self.pipeline is None else self.pipeline.eval_loss(data)

    @property
    def planned_steps(self) -> int:
        """Optimizer steps of the run, for LR schedules whose params leave ``max_iter`` out.

        From the plan; a bundle built by hand in epoch mode, before any data set was seen,
        falls back to ``solver.max_iter``.
        """
        steps = self.plan.batch.total_steps
        return int(steps) if steps is not None else int(self.cfg.SOLVER.MAX_ITER)

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype DeepSpeed runs the networks in: bf16 or fp16 when the ds_config enables it, else fp32."""
        return compute_dtype(self.ds_config)

    def to_device(self, value: Any) -> Any:
        """``value`` (a tensor, or a list/tuple/dict of them) on this model's device, floating tensors in ``compute_dtype``.

        DeepSpeed casts the network to bf16/fp16, not its inputs; integer tensors keep their dtype.
        """
        return to_device(value, self.device, self.compute_dtype)

    @property
    def pipelined(self) -> bool:
        """Whether ``deepspeed.pipeline`` runs the network as stages (``run_step`` is then not called)."""
        return self.pipeline is not None

    def enable_train(self) -> None:
        """Back to training: train mode, and the training weights if ``disable_train`` swapped in the EMA."""
        self._inference.close()
        set_train_mode(self.g_model, True)

    def disable_train(self) -> None:
        """Inference mode: eval mode and, when EMA is on, the EMA weights until ``enable_train``.

        The seed's promise is that ``generator()`` runs on EMA weights when EMA is on; the
        trainer's evaluation brackets itself with these two calls, so it gets them too.
        """
        set_train_mode(self.g_model, False)
        self._inference.close()
        self._inference.enter_context(self.eval_context())

    def eval_context(self) -> ContextManager[None]:
        """A block that runs on EMA weights when EMA is on (training weights restored bit for bit after)."""
        return self.ema.swapped() if self.ema is not None else contextlib.nullcontext()

    def extra_state(self) -> Dict[str, Any]:
        """This rank's state beyond the engines (the EMA shard); saved in the per-rank checkpoint file."""
        return {"ema": self.ema.state_dict()} if self.ema is not None else {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore ``extra_state``; a checkpoint without EMA starts the EMA at the resumed weights."""
        if self.ema is None:
            return
        if state.get("ema") is None:
            import logging

            logging.getLogger("engine").warning("resume: the checkpoint has no EMA state; the EMA restarts from the resumed weights")
            self.ema.reset()
            return
        self.ema.load_state_dict(state["ema"])

    def export_layout(self) -> Dict[str, Dict[str, Any]]:
        """Per engine, how a checkpoint saved in pieces becomes one network again (for convert_ckpt).

        Pipeline stages save one file per layer under pipeline keys; tensor-parallel ranks
        save column/row shards. Recorded in each tag's marker, so export needs no network.
        """
        if self.pipeline is not None:
            return {"generator": {"pipeline_key_map": dict(self.pipeline_key_map)}}
        size = self.plan.layout.tensor_parallel_size
        if size > 1:
            return {"generator": {"tp_size": size, "tp_specs": [dict(s) for s in layer_specs(self.ds_config)]}}
        return {}

    @property
    def engines(self) -> Dict[str, Any]:
        """Every DeepSpeed engine of the bundle by stable name (checkpoints save each)."""
        return {"generator": self.g_model}

    def learning_rates(self) -> Dict[str, float]:
        return {name: float(engine.get_lr()[0]) for name, engine in self.engines.items()}

    @property
    def global_steps(self) -> int:
        """Optimizer steps taken (DeepSpeed's counter)."""
        return int(self.g_model.global_steps)


def set_train_mode(engine: Any, training: bool) -> None:
    """``engine.train(training)`` and the engine's own ``training`` flag with it.

    DeepSpeed's ``train()``/``eval()`` switch only the wrapped module, so ``g_model.training``
    would stay True after ``disable_train``; seed code reads it (``if self.g_model.training``).
    """
    engine.train(training)
    engine.training = training


def split_step_output(output: Any, owner: str) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """``run_step``'s return value as (loss to backward, other scalars to log)."""
    if isinstance(output, torch.Tensor):
        loss, scalars = output, {}
    elif isinstance(output, Mapping) and "loss" in output:
        loss = output["loss"]
        scalars = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in output.items() if k != "loss"}
    else:
        raise EngineError(
            f"{owner}.run_step returned {type(output).__name__}; expected a loss tensor or dict(loss=tensor, **scalars)"
        )
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise EngineError(f"{owner}.run_step: the loss must be a scalar tensor, got {shape}")
    return loss, scalars
