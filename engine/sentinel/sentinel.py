"""``BadBatchSentinel``: on a non-finite or loss-spike step, every rank's samples and losses go to one file.

The trainer owns one (``trainer.sentinel``, built from ``solver.spike`` and ``output_dir``);
``BaseTrainer._on_nonfinite_step`` calls :meth:`BadBatchSentinel.record_nonfinite` before the
``solver.nan_policy`` acts, and ``SpikeHook`` (a default hook when ``solver.spike.enabled``)
calls :meth:`BadBatchSentinel.judge_step` after every step. Both are collectives, reached on
every rank at the same step: a non-finite step is skipped on every rank, and a spike is
judged on the loss all-reduced over ranks, the same number everywhere.

What a spike does besides the record and one warning: nothing. It is judged after the
optimizer step (the all-reduced loss exists only once every micro-batch ran), so its update
is already applied, and a spike is often a hard but healthy batch: stopping or skipping on
a statistical signal would cost more runs than it saves. The record names the samples so
they can be inspected or replayed.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional

import torch

from engine import comm
from engine.errors import EngineError
from engine.events.hooks import HookBase
from engine.log.metrics import global_grad_norm
from engine.sentinel.records import BadBatchLog, make_record, micro_batch_items, one_per_replica
from engine.sentinel.spike import Spike, SpikeWindow

logger = logging.getLogger("engine")


class BadBatchSentinel:
    """Records bad steps to ``output_dir/bad_batches.jsonl`` and keeps the spike window.

    Args:
        output_dir: the run's folder (global rank 0 writes the file there).
        window: the spike test, or None when ``solver.spike.enabled`` is off.
    """

    def __init__(self, output_dir: str, window: Optional[SpikeWindow] = None) -> None:
        self.log = BadBatchLog(output_dir) if comm.is_main_process() else None
        self.window = window

    # ---- the two moments ------------------------------------------------------------------
    def record_nonfinite(self, trainer: Any) -> None:
        """Record the current step as non-finite, with this step's outputs so far (every rank calls it)."""
        self.record(trainer, "nonfinite", trainer.storage.step_means())

    def judge_step(self, trainer: Any) -> Optional[Spike]:
        """Judge the finished step's loss (all-reduced: one number per step); record and warn on a spike.

        Returns:
            The spike, or None (also while the window warms up, and without a window).
        """
        if self.window is None:
            return None
        outputs = trainer.step_outputs
        if "loss" not in outputs:
            raise EngineError(f"solver.spike: the step outputs have no 'loss' to judge (got {sorted(outputs)})")
        spike = self.window.judge(mean_over_ranks(outputs["loss"]))
        if spike is None:
            return None
        if comm.is_main_process():
            logger.warning(
                f"step {trainer.iter + 1}: loss spike: {spike.loss:.6g} is {spike.z:.1f} standard deviations above "
                f"the mean of the {spike.steps} steps before ({spike.mean:.6g} ± {spike.std:.3g}; "
                f"solver.spike.z {self.window.threshold:g}); its samples are in {self.log.path}")
        self.record(trainer, "spike", outputs, z=spike.z)
        return spike

    # ---- the record -----------------------------------------------------------------------
    def record(self, trainer: Any, reason: str, outputs: Mapping[str, Any], *, z: Optional[float] = None) -> None:
        """Gather every data-parallel rank's part of the current step; global rank 0 appends one line per rank."""
        part = {"rank": int(trainer.dp_rank), "losses": scalar_floats(outputs),
                "micro_batches": micro_batch_items(trainer.sampler, trainer._sampler_position(trainer.iter),
                                                   trainer.micro_batch, trainer.accumulation)}
        parts = comm.all_gather_object(part)
        if self.log is None:
            return
        step, checkpoint = trainer.iter + 1, trainer.checkpoint.newest_complete_tag()
        grad_norm = generator_grad_norm(trainer.model)
        self.log.append([make_record(step=step, iteration=trainer.iter, rank=one["rank"], reason=reason,
                                     micro_batches=one["micro_batches"], losses=one["losses"], grad_norm=grad_norm,
                                     z=z, checkpoint=checkpoint, epoch=trainer.loop_counter)
                         for one in one_per_replica(parts, lambda part: part["rank"])])

    # ---- trainer state --------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """The spike window's losses ({} without a window): part of every rank's trainer state."""
        return {"spike_window": self.window.state_dict()} if self.window is not None else {}

    def load_state_dict(self, state: Optional[Mapping[str, Any]]) -> None:
        """Continue with a saved window; a checkpoint without one (spike test off then) warms up again."""
        if self.window is None:
            return
        saved = (state or {}).get("spike_window")
        if saved is None:
            logger.info("resume: the checkpoint has no spike window (solver.spike was off); it warms up again")
            return
        self.window.load_state_dict(saved)


class SpikeHook(HookBase):
    """Judges every step's loss for a spike (``solver.spike``); first among the default hooks.

    First, so the loss is judged as the model returned it, before any hook (the seed's
    ``iterate_after`` included) reads or changes the outputs, and before ``CheckpointHook``
    saves the window that now holds this step.
    """

    def __init__(self, sentinel: BadBatchSentinel) -> None:
        self.sentinel = sentinel

    def after_step(self) -> None:
        self.sentinel.judge_step(self.trainer)


def build_sentinel(cfg: Any) -> BadBatchSentinel:
    """The trainer's sentinel from ``solver.spike`` and ``output_dir``."""
    spike = cfg.SOLVER.SPIKE
    window = SpikeWindow(int(spike.WINDOW), int(spike.WARMUP), float(spike.Z)) if spike.ENABLED else None
    return BadBatchSentinel(cfg.OUTPUT_DIR, window)


def mean_over_ranks(value: Any) -> float:
    """``value`` averaged over every rank: one all-reduce of one number (and a host sync)."""
    total = torch.as_tensor(value).detach().to(torch.float64).reshape(1).clone()  # clone: reduced in place
    comm.all_reduce_sum(total)
    return float(total) / comm.get_world_size()


def scalar_floats(outputs: Mapping[str, Any]) -> Dict[str, float]:
    """The one-number outputs of a step as floats (a host sync: only on a bad step)."""
    floats = {}
    for name, value in outputs.items():
        if isinstance(value, torch.Tensor):
            if value.numel() == 1:
                floats[name] = float(value)
        elif isinstance(value, (int, float)):
            floats[name] = float(value)
    return floats


def generator_grad_norm(model: Any) -> Optional[float]:
    """The generator engine's global gradient norm of this step, when DeepSpeed computed one (ZeRO 1-3, bf16)."""
    engines = getattr(model, "engines", {})
    engine = engines.get("generator", next(iter(engines.values()), None))
    return global_grad_norm(engine)

