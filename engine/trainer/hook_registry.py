"""``HOOK_REGISTRY`` and the default hook list: what runs around every step, in which order.

Default order (``default_hooks``), and why:

0. ``SpikeHook`` (``solver.spike.enabled``): judges the step's loss before any hook reads or
   changes the outputs (``engine.sentinel``).
1. ``TrainFrameworkCallbacksHook``: the seed's ``before_loop`` / ``iterate_after`` / ``after_loop`` run
   first, so they may read or change the step outputs every later hook sees.
2. ``EvalHook`` (``solver.eval_period``): before anything that reports, so a step's
   metrics are logged and written with that step.
3. ``BestCheckpointHook`` (when ``solver.best_metric`` is set): right after the evaluation it judges.
4. ``TensorboardHook`` (rank 0, ``trainer.tensorboard``), then ``TrackersHook`` (rank 0, the
   other ``trainer.loggers``): both write the loop's one metrics window.
5. ``ProgressHook`` (rank 0 on a terminal) or ``LoggerHook``: near the end, so the time it
   reports includes the other hooks.
6. the hooks of ``trainer.hooks``, in list order.
7. ``CheckpointHook``: last, so a save sees the RNG as the next step will, and its RNG
   restore on resume follows every other ``before_train`` (``engine.checkpoint.hook``). User
   hooks therefore go before it; the trainer warns, naming them, about any that a
   ``build_hooks`` override puts after it.

Both checkpoint hooks are given ``trainer.checkpoint`` (the ``Checkpointer``), which owns
where and how tags are saved.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Sequence, Union

from engine import comm
from engine.checkpoint.best import BestCheckpointHook
from engine.checkpoint.hook import CheckpointHook
from engine.checkpoint.preempt import StopRequests, signal_numbers
from engine.log.progress import ProgressHook, use_progress_bar
from engine.log.tensorboard import TensorboardHook
from engine.log.trackers_hook import TrackersHook
from engine.trackers.group import TrackerGroup
from engine.events.hooks import HookBase
from engine.log.logger_hook import LoggerHook
from engine.sentinel.sentinel import SpikeHook
from engine.trainer.hooks import EvalHook, TrainFrameworkCallbacksHook
from engine.utils.registry import Registry

HOOK_REGISTRY = Registry("HOOK")
HOOK_REGISTRY.__doc__ = "Hooks that ``trainer.hooks`` entries name: dict(name=<registered name>, period=N, **params)."

for _hook in (EvalHook, LoggerHook, TensorboardHook):
    HOOK_REGISTRY.register(_hook)


def build_config_hooks(specs: Union[None, Mapping[str, Any], Sequence[Mapping[str, Any]]],
                       where: str = "trainer.hooks") -> List[HookBase]:
    """One hook per ``dict(name=..., **params)`` of ``trainer.hooks``, in list order.

    Every key besides ``name`` (``period`` included) goes to the hook's constructor, so a
    misspelled parameter fails here with the key path, before training starts.
    """
    if not specs:
        return []
    if isinstance(specs, Mapping):
        specs = [specs]
    return [HOOK_REGISTRY.build(dict(spec), where=f"{where}[{i}]") for i, spec in enumerate(specs)]


def default_hooks(trainer: Any) -> List[HookBase]:
    """The hooks of a ``BaseTrainer`` in the order of the module doc."""
    cfg = trainer.cfg
    solver, options = cfg.SOLVER, cfg.TRAINER
    evaluation = EvalHook(solver.EVAL_PERIOD)
    hooks: List[HookBase] = [SpikeHook(trainer.sentinel)] if solver.SPIKE.ENABLED else []
    hooks += [TrainFrameworkCallbacksHook(), evaluation]
    if solver.BEST_METRIC:
        hooks.append(BestCheckpointHook(trainer.checkpoint, evaluation, solver.BEST_METRIC, solver.BEST_MODE))
    if options.TENSORBOARD and comm.is_main_process():
        hooks.append(TensorboardHook(options.LOG_PERIOD))
    trackers = [name for name in options.LOGGERS if name != "tensorboard"]  # TensorboardHook owns TensorBoard
    if trackers and comm.is_main_process():
        hooks.append(TrackersHook(TrackerGroup.from_names(trackers), options.LOG_PERIOD, evaluation))
    progress = ProgressHook if use_progress_bar(options.PROGRESS) else LoggerHook
    hooks.append(progress(options.LOG_PERIOD))
    hooks.extend(build_config_hooks(options.HOOKS))
    requests = StopRequests(cfg.OUTPUT_DIR, signal_numbers(solver.SAVE_ON_SIGNAL), timeout_s=options.DIST_TIMEOUT)
    hooks.append(CheckpointHook(trainer.checkpoint, solver.CHECKPOINT_PERIOD, solver.STOP_AT_ITER, requests))
    return hooks
