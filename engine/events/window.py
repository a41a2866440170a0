"""Step outputs between two writes and their mean over ranks, shared by the console logger and TensorBoard."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Dict, List, Mapping

import torch

from engine import comm


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


def reduce_mean(values: Dict[str, torch.Tensor], counts: torch.Tensor) -> Dict[str, float]:
    """Sum per-rank totals and counts over ranks; return global means."""
    names = sorted(values)
    stacked = torch.stack([values[n].double() for n in names] + [counts.double()])
    comm.all_reduce_sum(stacked)
    total = max(stacked[-1].item(), 1.0)
    return {n: stacked[i].item() / total for i, n in enumerate(names)}
