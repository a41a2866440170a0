"""A per-step store of values to log, reachable from anywhere without a trainer reference.

Losses, models and hooks call ``put_scalar`` while a step runs; the trainer opens an
``EventStorage`` around the loop and its logging hooks read what was put. Outside a
training loop (a loss used on its own) ``put_scalar`` does nothing, so library code can
report values unconditionally. Values stay tensors until a logger reads them: calling
``.item()`` on every micro-batch would force a device sync each time.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, List, Optional

_ACTIVE: List["EventStorage"] = []


class EventStorage:
    """Collects named scalars for the current optimizer step; ``pop_step`` averages them.

    A value put several times in one step (once per micro-batch under gradient
    accumulation) is reported as the mean of its puts.
    """

    def __init__(self) -> None:
        self._sums: Dict[str, Any] = {}
        self._counts: Dict[str, int] = defaultdict(int)
        self._images: Dict[str, Any] = {}
        self._metrics: Dict[str, float] = {}

    def put_scalar(self, name: str, value: Any) -> None:
        """Add ``value`` to this step's mean; an image batch (a tensor of 3 or more dims) is kept as an image."""
        if hasattr(value, "detach"):
            if value.dim() >= 3:
                self.put_image(name, value)
                return
            if value.requires_grad:  # outputs of train_micro_step are detached already: no new tensor
                value = value.detach()
        if name in self._sums:
            self._sums[name] = self._sums[name] + value
        else:
            self._sums[name] = value
        self._counts[name] += 1

    def put_image(self, name: str, image: Any) -> None:
        """Keep the latest image batch under ``name`` (N×C×H×W or C×H×W, values in [0, 1])."""
        self._images[name] = image.detach() if hasattr(image, "detach") else image

    def step_means(self) -> Dict[str, Any]:
        """The mean of every scalar put since the last ``pop_step`` (tensors or floats), kept for it.

        What a step has reported so far, for a reader inside the step (the non-finite record).
        """
        counts = self._counts
        # no division (a new tensor) for the common single put per step
        return {k: v if counts[k] == 1 else v / counts[k] for k, v in self._sums.items()}

    def pop_step(self) -> Dict[str, Any]:
        """The mean of every scalar put since the last call (tensors or floats), then clear."""
        means = self.step_means()
        self._sums = {}
        self._counts.clear()
        return means

    def pop_images(self) -> Dict[str, Any]:
        images, self._images = self._images, {}
        return images

    def put_metrics(self, metrics: Dict[str, float]) -> None:
        """Evaluation results of this step, kept until a writer (TensorBoard) pops them."""
        self._metrics.update(metrics)

    def pop_metrics(self) -> Dict[str, float]:
        metrics, self._metrics = self._metrics, {}
        return metrics

    def __enter__(self) -> "EventStorage":
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _ACTIVE.remove(self)


def get_event_storage() -> Optional[EventStorage]:
    """The innermost active storage, or None outside a training loop."""
    return _ACTIVE[-1] if _ACTIVE else None


def put_scalar(name: str, value: Any) -> None:
    """Record ``value`` under ``name`` for the current step; a no-op outside a loop."""
    storage = get_event_storage()
    if storage is not None:
        storage.put_scalar(name, value)


def put_image(name: str, image: Any) -> None:
    """Record an image batch for TensorBoard; a no-op outside a loop."""
    storage = get_event_storage()
    if storage is not None:
        storage.put_image(name, image)
