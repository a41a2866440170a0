"""``SpikeWindow``: whether a step's loss is a spike, by its z-score over the losses of the steps before it.

The window holds plain Python floats and computes with ``math.fsum``: given the same losses
(every rank judges the all-reduced step loss) every rank reaches the same verdict, and a
resumed run that loaded the window (``state_dict``) judges exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, Mapping, Optional

from engine.errors import EngineError


@dataclass(frozen=True)
class Spike:
    """A judged step whose loss lay more than ``threshold`` standard deviations above the window's mean.

    Args:
        loss: the step's loss (the mean over data-parallel ranks).
        mean: mean of the window's losses (the steps before).
        std: their sample standard deviation.
        z: ``(loss - mean) / std``.
        steps: losses the window held (the steps it was judged against).
    """

    loss: float
    mean: float
    std: float
    z: float
    steps: int


class SpikeWindow:
    """The losses of the latest ``size`` finite steps, and the one-sided z-score test of a new one.

    A step is judged once the window holds ``warmup`` losses; then its loss joins the window,
    spike or not. Letting spikes in keeps a lasting rise of the loss (a new data phase, an LR
    change) from being flagged at every later step; the price is that a second spike within
    ``size`` steps of a large one may fall under the threshold. Only rises count: a sudden drop
    of the loss harms nothing. A non-finite loss is not judged and does not join the window
    (the non-finite path records that step).

    Args:
        size: losses kept (``solver.spike.window``).
        warmup: losses the window must hold before a step is judged (``solver.spike.warmup``, >= 2).
        threshold: the z-score above which a step is a spike (``solver.spike.z``).
    """

    def __init__(self, size: int, warmup: int, threshold: float) -> None:
        if not 2 <= warmup <= size:
            raise EngineError(f"SpikeWindow: warmup must be in [2, size]; got warmup {warmup}, size {size}")
        self.size, self.warmup, self.threshold = int(size), int(warmup), float(threshold)
        self.losses: Deque[float] = deque(maxlen=self.size)

    def __len__(self) -> int:
        return len(self.losses)

    def judge(self, loss: float) -> Optional[Spike]:
        """The verdict on ``loss`` against the losses before it; then ``loss`` joins the window.

        Returns:
            A ``Spike`` when its z-score exceeds the threshold, else None (also while warming up).
        """
        loss = float(loss)
        if not math.isfinite(loss):
            return None
        verdict = None
        if len(self.losses) >= self.warmup:
            mean, std = self.stats()
            z = (loss - mean) / std if std > 0 else (math.inf if loss > mean else 0.0)
            if z > self.threshold:
                verdict = Spike(loss, mean, std, z, len(self.losses))
        self.losses.append(loss)
        return verdict

    def stats(self) -> tuple:
        """(mean, sample standard deviation) of the window; deterministic for the same losses."""
        count = len(self.losses)
        mean = math.fsum(self.losses) / count
        variance = math.fsum((x - mean) ** 2 for x in self.losses) / (count - 1)
        return mean, math.sqrt(variance)

    def state_dict(self) -> Dict[str, Any]:
        """The window's losses, oldest first (saved in every rank's trainer state)."""
        return {"losses": list(self.losses)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue with the saved losses; a window resized since keeps the newest ones that fit."""
        losses = state.get("losses")
        if not isinstance(losses, (list, tuple)) or not all(isinstance(x, (int, float)) for x in losses):
            raise EngineError(f"resume: the spike window in the checkpoint is not a list of numbers: {losses!r}")
        self.losses = deque((float(x) for x in losses), maxlen=self.size)
