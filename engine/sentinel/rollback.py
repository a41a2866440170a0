"""``solver.nan_policy = 'rollback'``: skip-list the samples of a non-finite step, reload the newest checkpoint.

On a step whose loss or gradients are non-finite (the update was dropped on every rank),
every rank rebuilds its own micro-batches of that step and finds the samples whose loss is
non-finite on their own (``engine.sentinel.culprits``); the ranks pool what they found,
the dataset indices join the training sampler's skip list, and the newest complete
checkpoint is loaded in-process through the resume path (engines, EMA, trainer state,
RNG). The sampler then restarts at that checkpoint's step in the stream *with* the skip
list, which is exactly what a run configured with ``dataloader.skip_samples`` set to that
list from its start reads at that step (``TrainingSampler``), so the two runs end
bit-identical when the skipped samples had not been read before that checkpoint.

Each rollback is logged, and appended to ``output_dir/rollbacks.jsonl`` by rank 0: one
line per data-parallel rank in the ``bad_batches.jsonl`` form (step, iteration, rank,
reason, micro_batches, losses, grad_norm, z, checkpoint, epoch) plus ``culprits`` (that
rank's culprit samples with their non-finite outputs), ``skip_samples`` (the whole list
after it) and ``rolled_back_to`` (the step reloaded); ``tools/replay_batch.py`` reads
either file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from engine import comm
from engine.checkpoint.resume import choose_tag, load_checkpoint
from engine.sentinel.culprits import Item, MicroBatchVerdict, describe, find_culprits
from engine.sentinel.records import RecordLog, make_record, micro_batch_items, one_per_replica

logger = logging.getLogger("engine")

#: the sidecar of the rollbacks, in output_dir
ROLLBACKS_FILE = "rollbacks.jsonl"


class RollbackRefused(Exception):
    """A rollback is not possible (none left, no checkpoint, no culprit sample): the run stops as 'stop' does."""


@dataclass
class BadStep:
    """A non-finite step as this rank saw it: which samples it read, and what re-running them gave."""

    step: int
    iteration: int
    epoch: Any
    dp_rank: int
    micro_batches: List[List[Item]]
    losses: Dict[str, float]
    verdicts: List[MicroBatchVerdict]

    def record(self, checkpoint: Optional[str]) -> Dict[str, Any]:
        """This rank's line in the ``bad_batches.jsonl`` form, with its culprit samples."""
        line = make_record(step=self.step, iteration=self.iteration, rank=self.dp_rank, reason="nonfinite",
                           micro_batches=self.micro_batches, losses=self.losses, grad_norm=None, z=None,
                           checkpoint=checkpoint, epoch=self.epoch)
        return dict(line, culprits=[s.to_json() for v in self.verdicts for s in v.culprits])


def examine_step(trainer: Any, losses: Dict[str, float]) -> BadStep:
    """Rebuild and re-run this rank's micro-batches of the current step (``trainer.iter``).

    Args:
        trainer: the ``BaseTrainer``: its sampler, position, data set, collate function and bundle.
        losses: this rank's step means of the outputs, as floats.
    """
    batches = micro_batch_items(trainer.sampler, trainer._sampler_position(trainer.iter), trainer.micro_batch,
                                trainer.accumulation)
    verdicts = find_culprits(trainer.model, trainer.train_dataset, batches, epoch=trainer.loop_counter,
                             collate_fn=trainer.collate_train_fn,
                             seed_per_sample=bool(trainer.cfg.DATALOADER.SEED_PER_SAMPLE))
    return BadStep(trainer.iter + 1, trainer.iter, trainer.loop_counter, trainer.dp_rank, batches, losses, verdicts)


def roll_back(trainer: Any, bad: BadStep, max_rollbacks: int) -> int:
    """Skip-list the culprits of ``bad`` (found on every rank), reload the newest complete checkpoint.

    Every rank calls it at the same step (a collective).

    Args:
        trainer: the ``BaseTrainer``; its ``rollbacks`` counts the rollbacks of this run.
        bad: what :func:`examine_step` found on this rank.
        max_rollbacks: ``solver.max_rollbacks``.

    Returns:
        The step to go on at (the reloaded checkpoint's).

    Raises:
        RollbackRefused: none left, no culprit sample, or no complete checkpoint; the message says which.
    """
    for line in describe(bad.verdicts):
        logger.warning(f"step {bad.step}, rank {comm.get_rank()}: {line}")
    everyone = comm.all_gather_object(bad)
    culprits = sorted({s.index for theirs in everyone for v in theirs.verdicts for s in v.culprits})
    if not culprits:
        raise RollbackRefused("no sample of the step has a non-finite loss on its own (the whole batch, or the "
                              "gradients, went non-finite); nothing to skip")
    if trainer.rollbacks >= max_rollbacks:
        raise RollbackRefused(f"solver.max_rollbacks ({max_rollbacks}) reached; culprit samples {culprits} not skipped")
    checkpointer = trainer.checkpoint
    checkpointer.wait()  # a save in flight completes first: it may be the newest checkpoint
    tag = choose_tag(checkpointer.root)
    if tag is None:
        raise RollbackRefused(f"no complete checkpoint in {checkpointer.root} to roll back to (culprit samples "
                              f"{culprits}); save earlier with solver.checkpoint_period")
    trainer.sampler.set_skip(sorted(set(trainer.sampler.skip) | set(culprits)))
    load_checkpoint(checkpointer, trainer.model, trainer.load_state_dict, os.path.join(checkpointer.root, tag))
    trainer.rollbacks += 1
    step = trainer.start_iter
    _append_records(trainer.cfg.OUTPUT_DIR, everyone, tag, list(trainer.sampler.skip), step)
    trainer.restart_data_at(step)
    checkpointer.restore_rng()  # after the data iterator exists, as on resume
    logger.warning(f"step {bad.step}: non-finite loss; dataset indices {culprits} skip-listed "
                   f"(dataloader.skip_samples is now {list(trainer.sampler.skip)}); rolled back to {tag} "
                   f"(step {step}); rollback {trainer.rollbacks} of {max_rollbacks}")
    return step


def _append_records(output_dir: str, everyone: List[BadStep], tag: str, skip: List[int], step: int) -> None:
    """Rank 0 appends one line per data-parallel rank to ``rollbacks.jsonl``, flushed and fsynced."""
    if comm.is_main_process():
        RecordLog(os.path.join(output_dir, ROLLBACKS_FILE)).append(
            [dict(bad.record(tag), skip_samples=skip, rolled_back_to=step)
             for bad in one_per_replica(everyone, lambda bad: bad.dp_rank)])
