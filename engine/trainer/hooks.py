"""Hooks: everything around the loop that is not the algorithm (logging, timing, evaluation).

The loop calls, for each hook in list order::

    hook.before_train()
    for step in range(start, max_steps):
        hook.before_step()
        trainer.run_step()
        hook.after_step()
    hook.after_train()

Order matters: the user's seed callbacks run first (they may read or change step outputs),
evaluation before logging (so a logged line can include fresh metrics), the logger near
the end so it reports the time every other hook took, and the checkpoint last. The full
default list and the reasons are in ``engine.trainer.hook_registry``.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import defaultdict
from typing import Any, Dict, List, Mapping

import torch

from engine import comm
from engine.utils.signature import positional_capacity

logger = logging.getLogger("engine")


class HookBase:
    """A hook holds its trainer by weak reference (``self.trainer``), set by ``register_hooks``."""

    trainer: Any = None

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_step(self) -> None: ...

    def after_step(self) -> None: ...


class PeriodicHook(HookBase):
    """A hook that acts every ``period`` optimizer steps and after the last one.

    ``period`` 0 means "only at the end".
    """

    def __init__(self, period: int) -> None:
        self.period = period

    def is_due(self) -> bool:
        done = self.trainer.iter + 1  # steps completed, counted from 1
        last = done == self.trainer.max_iter
        return last or (self.period > 0 and done % self.period == 0)


class SeedCallbacksHook(HookBase):
    """Calls the seed's overridable trainer methods: before_loop, iterate_after, after_loop."""

    seed_form = False

    def before_train(self) -> None:
        # the seed's iterate_after(epoch) takes no loss_dict and follows the seed's loop cadence
        self.seed_form = positional_capacity(self.trainer.iterate_after) < 2
        self.trainer.before_loop()

    def after_step(self) -> None:
        trainer = self.trainer
        if not self.seed_form:
            trainer.iterate_after(trainer.loop_counter, trainer.step_outputs)
        elif trainer.ends_loop_turn:
            trainer.iterate_after(trainer.loop_counter)

    def after_train(self) -> None:
        self.trainer.after_loop()


class EvalHook(PeriodicHook):
    """Runs ``trainer.evaluate`` on the validation loader every ``period`` steps and at the end.

    Scalar results become ``trainer.latest_metrics`` (and go to the event storage for
    TensorBoard); an ``images`` tensor in the result goes to the storage as an image grid.
    """

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.latest: Dict[str, float] = {}
        self.last_step = -1  # the step (counted from 1) of the latest evaluation

    def after_step(self) -> None:
        if self.trainer.val_loader is None or not self.is_due():
            return
        start = time.perf_counter()
        results = self.trainer.run_evaluation()
        images = {k: v for k, v in results.items() if isinstance(v, torch.Tensor) and v.dim() >= 3}
        self.latest = {k: float(v) for k, v in results.items() if k not in images}
        self.last_step = self.trainer.iter + 1
        self.trainer.latest_metrics = dict(self.latest)
        storage = getattr(self.trainer, "storage", None)
        if storage is not None:
            storage.put_metrics(self.latest)
            for name, image in images.items():
                storage.put_image(name if "/" in name else f"val/{name}", image)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in self.latest.items())
        logger.info(f"eval at step {self.last_step}: {shown}  ({time.perf_counter() - start:.1f}s)")


class StepWindow:
    """The step outputs since the last write, kept as they are until the write.

    Appending a reference per step costs no tensor op and no device sync; ``means`` does
    all the arithmetic at once, with a single transfer to the host.
    """

    def __init__(self) -> None:
        self.outputs: List[Mapping[str, Any]] = []
        self.data_time = 0.0
        self.start = time.perf_counter()

    def add(self, outputs: Mapping[str, Any], data_time: float) -> None:
        self.outputs.append(outputs)
        self.data_time += data_time

    def __len__(self) -> int:
        return len(self.outputs)

    def means(self) -> Dict[str, float]:
        """The mean of every output name over the steps that reported it."""
        columns: Dict[str, list] = defaultdict(list)
        for outputs in self.outputs:
            for name, value in outputs.items():
                columns[name].append(value)
        names, stacked, plain = [], [], {}
        for name, values in columns.items():
            if all(isinstance(v, torch.Tensor) for v in values):
                names.append(name)
                stacked.append(torch.stack([v.reshape(()) for v in values]).double().mean())
            else:
                plain[name] = sum(float(v) for v in values) / len(values)
        if stacked:
            devices = {t.device for t in stacked}
            host = torch.stack(stacked).tolist() if len(devices) == 1 else [t.item() for t in stacked]
            plain.update(zip(names, host))
        return plain

    def reset(self) -> float:
        """Start a new window; returns the seconds the old one lasted."""
        now = time.perf_counter()
        elapsed, self.start = max(now - self.start, 1e-9), now
        self.outputs = []
        self.data_time = 0.0
        return elapsed


class LoggerHook(PeriodicHook):
    """Logs the mean of every step output over the period, the LR of each engine and samples/s.

    Step outputs stay tensors between logs: converting them every step would force a
    device sync per step on GPU. ``ProgressHook`` (engine.log.progress) replaces the
    console line with a progress bar by overriding ``write``.
    """

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.window = StepWindow()
        self._train_start = 0.0

    def before_train(self) -> None:
        self._train_start = time.perf_counter()
        self.window.reset()

    def after_step(self) -> None:
        trainer = self.trainer
        self.window.add(trainer.step_outputs, trainer.data_time)
        if not self.is_due():
            return
        count, data_time = len(self.window), self.window.data_time
        means = self.window.means()
        elapsed = self.window.reset()
        speed = count * trainer.global_batch_size / elapsed
        done = trainer.iter + 1
        eta = (trainer.max_iter - done) * elapsed / count
        lrs = trainer.model.learning_rates()
        trainer.latest_logged = dict(means, samples_per_s=speed)
        lr_text = "  ".join(f"lr/{k} {v:.3e}" for k, v in lrs.items())
        terms = "  ".join(f"{k} {v:.4f}" for k, v in means.items())
        epoch = f"epoch {trainer.epoch}  " if trainer.epoch_mode else ""
        self.write(
            f"step {done}/{trainer.max_iter}  {epoch}{terms}  {lr_text}  samples/s {speed:.1f}  "
            f"data {100 * data_time / elapsed:.0f}%  eta {_format_seconds(eta)}",
            means, lrs,
        )

    def write(self, line: str, means: Dict[str, float], lrs: Dict[str, float]) -> None:
        logger.info(line)

    def after_train(self) -> None:
        total = time.perf_counter() - self._train_start
        logger.info(f"training finished: {self.trainer.iter + 1 - self.trainer.start_iter} steps in {_format_seconds(total)}")


def _format_seconds(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def register_hooks(trainer: Any, hooks: list) -> list:
    """Attach ``trainer`` to each hook by weak proxy (no reference cycle) and return the list."""
    for hook in hooks:
        hook.trainer = weakref.proxy(trainer)
    return hooks


def reduce_mean(values: Dict[str, torch.Tensor], counts: torch.Tensor) -> Dict[str, float]:
    """Sum per-rank totals and counts over ranks; return global means."""
    names = sorted(values)
    stacked = torch.stack([values[n].double() for n in names] + [counts.double()])
    comm.all_reduce_sum(stacked)
    total = max(stacked[-1].item(), 1.0)
    return {n: stacked[i].item() / total for i, n in enumerate(names)}
