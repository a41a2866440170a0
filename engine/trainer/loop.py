"""``TrainLoop``: the loop itself, on objects: a model bundle, a data iterator, hooks, numbers.

No config, no process group, no DeepSpeed: anything whose ``train_micro_step(data, epoch=...)``
returns a ``StepResult`` (or a dict of outputs) can be trained by it, which is how
tests/unit/test_loop.py runs it on a toy ``nn.Linear``. ``BaseTrainer`` builds the objects
from a config and inherits this loop. In pseudocode::

    hooks.before_train()
    for iter in range(start_iter, max_iter):
        hooks.before_step()
        run_step():                                   # one optimizer step
            for _ in range(accumulation):                 # (counted items: all fetched first)
                data = next(data_iter)                # timed: the data wait
                result = model.train_micro_step(data, epoch=loop_counter)
                storage.put_scalar(each output)
            if any result.skipped: _on_nonfinite_step()   # may raise Rewind(step): go on there
            step_outputs = storage.pop_step()         # the mean over the micro-batches
            metrics.add(step_outputs, data_time)      # the one metrics window
        hooks.after_step()
    hooks.after_train()                               # after_failure() instead when a step raised

Hooks read the loop (``iter``, ``step_outputs``, ``metrics``, ``storage``) and write only
their own state.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional

from engine.data.loader import next_batch
from engine.events.hooks import HookBase
from engine.events.step import Rewind, StepResult
from engine.events.storage import EventStorage
from engine.log.metrics import MetricsWindow

logger = logging.getLogger("engine")


class TrainLoop:
    """Steps a model bundle over a data iterator, calling hooks around each optimizer step.

    Args:
        model: the bundle; ``train_micro_step(data, epoch=...)`` runs one micro-batch.
        data: an iterable of micro-batches (iterated once, when ``train`` starts).
        hooks: called in list order at each moment; attach them with ``register_hooks``.
        start_iter: the first step (0, or the resumed step).
        max_iter: the step to stop before.
        accumulation: micro-batches per optimizer step.
        samples_per_step: samples of one optimizer step over all ranks (for samples/s).
        metrics: the metrics window, when the caller builds its own (``BaseTrainer`` sets tokens' scale).
    """

    def __init__(self, model: Any, data: Optional[Iterable], hooks: List[HookBase], *, start_iter: int = 0,
                 max_iter: int, accumulation: int = 1, samples_per_step: int = 1,
                 metrics: Optional[MetricsWindow] = None) -> None:
        self.model = model
        self.data = data
        self.hooks = hooks
        self.start_iter = self.iter = start_iter
        self.max_iter = max_iter
        self.accumulation = accumulation
        self.metrics = metrics if metrics is not None else MetricsWindow(samples_per_step)
        self.step_outputs: Dict[str, Any] = {}
        self.data_time = 0.0
        self.skipped_steps = 0  # optimizer steps whose update was dropped as non-finite
        self._data_iter: Optional[Iterator] = None

    @property
    def loop_counter(self) -> int:
        """What ``train_micro_step`` gets as ``epoch``: the step here; ``BaseTrainer`` adds epoch mode."""
        return self.iter

    def train(self) -> None:
        """Run steps ``start_iter .. max_iter - 1`` with the hooks around them."""
        self._data_iter = iter(self.data)
        with EventStorage() as self.storage:
            self.metrics.reset()
            try:
                self._call_hooks("before_train")
                step = self.start_iter
                while step < self.max_iter:
                    self.iter = step
                    self._call_hooks("before_step")
                    try:
                        self.run_step()
                    except Rewind as rewind:  # a rollback reloaded an earlier position: that step did not happen
                        self.storage.pop_step()
                        step = rewind.step
                        continue
                    self._call_hooks("after_step")
                    step += 1
            except BaseException:
                self._call_hooks("after_failure")
                raise
            self._call_hooks("after_train")

    def run_step(self) -> None:
        """One optimizer step: ``accumulation`` micro-batches through the model bundle.

        A bundle that weighs losses by item counts (``counts_items``) is handed the step's
        micro-batches first (``begin_accumulation``): the same batches in the same order,
        fetched before the first runs instead of one at a time.
        """
        self.data_time, skipped = 0.0, False
        window = None
        if getattr(self.model, "counts_items", False):
            window = [self._next_batch() for _ in range(self.accumulation)]
            self.model.begin_accumulation(window)
        for position in range(self.accumulation):
            data = window[position] if window is not None else self._next_batch()
            result = self._as_result(self.model.train_micro_step(data, epoch=self.loop_counter))
            skipped = skipped or result.skipped
            for name, value in result.outputs.items():
                self.storage.put_scalar(name, value)
        if skipped:
            self.skipped_steps += 1
            self._on_nonfinite_step()
        self.step_outputs = self.storage.pop_step()
        self.metrics.add(self.step_outputs, self.data_time)

    def _next_batch(self) -> Any:
        """The next micro-batch, its wait added to this step's data time."""
        start = time.perf_counter()
        data = next_batch(self._data_iter)  # shared-memory exhaustion -> EngineError
        self.data_time += time.perf_counter() - start
        return data

    def _as_result(self, returned: Any) -> StepResult:
        """A ``StepResult``; an override of ``train_micro_step`` written before it returns a dict of outputs.

        Such an override's skip is what the bundle's ``last_step_skipped`` says after the
        call (``BaseModel`` keeps it for the latest micro-step), or no skip for a bundle without one.
        """
        if isinstance(returned, StepResult):
            return returned
        outputs = dict(returned) if isinstance(returned, Mapping) else {}
        return StepResult(outputs, skipped=bool(getattr(self.model, "last_step_skipped", False)))

    def _on_nonfinite_step(self) -> None:
        """A step's update was dropped as non-finite; here it is logged and training goes on."""
        logger.warning(f"step {self.iter + 1}: non-finite loss or gradients; the update was skipped "
                       f"({self.skipped_steps} skipped so far)")

    def _call_hooks(self, stage: str) -> None:
        for hook in self.hooks:
            getattr(hook, stage)()
