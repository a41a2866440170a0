"""TrainFramework's ``BaseTrainer`` attribute names, read by trainers written for it, as views of engine's state.

Each is derived from the config or from the trainer's own attributes when read, so there is
one owner of each fact and nothing here draws random numbers or touches the data order.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Tuple

from engine.checkpoint.resume import resume_or_load
from engine.errors import EngineError

logger = logging.getLogger("engine")


class TrainFrameworkTrainerSurface:
    """Mixin of ``BaseTrainer``: ``default_log_name``, ``output``, ``device``, ``enable_epoch_method``,
    ``gradient_accumulation_batch``, ``train_batch_size``, ``model_path``.

    Expects ``cfg``, ``model``, ``sampler``, ``epoch_mode``, ``micro_batch`` and ``sentinel`` from the trainer.
    """

    @property
    def default_log_name(self) -> str:
        """``output_log_name``: the logger user code writes to (routed like ``engine``'s)."""
        return self.cfg.OUTPUT_LOG_NAME

    @property
    def output(self) -> str:
        return self.cfg.OUTPUT_DIR

    @property
    def device(self) -> str:
        """Where the model runs, as the seed's string (``cpu``, ``cuda:0``): ``tensor.to(self.device)`` works."""
        return str(self.model.device)

    @property
    def enable_epoch_method(self) -> bool:
        return self.epoch_mode

    @property
    def gradient_accumulation_batch(self) -> int:
        """``solver.gradient_accumulation_batch`` as written (values <= 1 mean no accumulation)."""
        return int(self.cfg.SOLVER.GRADIENT_ACCUMULATION_BATCH)

    @property
    def train_batch_size(self) -> int:
        """Samples per micro-batch per rank (the seed's name for what each forward sees)."""
        return self.micro_batch

    @property
    def model_path(self) -> str:
        """``trainer.weights``."""
        return self.cfg.TRAINER.WEIGHTS

    # ---- weights / resume -----------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Where the run stands after the current step; the sampler position is all the data needs."""
        done = self.iter + 1
        per_step = self.cfg.SOLVER.TRAIN_PER_BATCH
        base_iter, base_global = getattr(self, "_data_base", (0, 0))  # global_sample_index: after a resize
        return {"iteration": done, "epoch": done // self.steps_per_epoch, "samples_per_step": per_step,
                "sampler_position": self._sampler_position(done),
                "global_sample_index": base_global + (done - base_iter) * per_step * self.dp_size,
                "dp_size": self.dp_size, "skip_samples": list(self._skip_list()),
                "rollbacks": int(getattr(self, "rollbacks", 0)), "sentinel": self.sentinel.state_dict()}

    def _skip_list(self) -> Tuple[int, ...]:
        """The training sampler's skip list (a sampler of a subclass's own may have none)."""
        return tuple(getattr(getattr(self, "sampler", None), "skip", ()))

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
            raise EngineError(f"--resume: the checkpoint was saved with solver.train_per_batch {state['samples_per_step']} "
                              f"on {state['dp_size']} data-parallel ranks; this run has {per_step} on {self.dp_size}")
        self.start_iter = self.iter = int(state["iteration"])
        # the skip list only grows: a rollback reloads a checkpoint saved before its culprits were known
        saved_skip = [int(i) for i in state.get("skip_samples", [])]
        kept = set(self._skip_list())
        if set(saved_skip) - kept:
            self.sampler.set_skip(sorted(kept | set(saved_skip)))
            logger.info(f"resume: the checkpoint skips dataset indices {saved_skip}; the training stream leaves out "
                        f"{list(self._skip_list())} (with dataloader.skip_samples)")
        self.rollbacks = max(int(getattr(self, "rollbacks", 0)), int(state.get("rollbacks", 0)))
        total = int(state.get("global_sample_index", state["sampler_position"] * state["dp_size"]))
        self._data_base = (self.start_iter, total)
        self.sentinel.load_state_dict(state.get("sentinel"))  # the spike window: a resumed run judges as before
        if state["dp_size"] != self.dp_size:  # global_sample_index re-divided
            logger.info(f"resume: global sample index {total} over {self.dp_size} data-parallel ranks (was "
                        f"{state['dp_size']}): each rank starts at sample {total // self.dp_size} of its stream")

    def resume_or_load(self, resume: bool = False) -> None:
        """Resume from the newest complete checkpoint, or load ``trainer.weights``.

        The loaded RNG waits in ``self.checkpoint`` for ``CheckpointHook.before_train``; a trainer
        whose ``build_hooks`` left that hook out gets it back here, with a warning.
        """
        resume_or_load(self, resume)
        if self.checkpoint.rng_pending and self.checkpoint_hook is None:
            logger.warning("--resume: no CheckpointHook among the trainer's hooks; RNG restored before the data iterator")
            self.checkpoint.restore_rng()
