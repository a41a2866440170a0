"""Which samples of a micro-batch make its loss non-finite, found by rebuilding and re-running them.

A non-finite step names its micro-batches by their ``(dataset_index, sample_seed)`` items
(``TrainingSampler.items``). Each item is rebuilt through the data set and its pipeline
exactly as training loaded it (``SeededDataset`` seeds the augmentation RNGs with the sample
seed), collated with the training collate function, and run through the bundle's
``eval_step`` (``run_step`` without any optimizer step) under ``torch.no_grad``: first the
whole micro-batch, then each sample alone. Every output of the step (the returned loss and
scalars, and the loss terms a ``LossCompose`` reports through the event storage) is
checked for NaN/inf.

The training RNG streams (python, numpy, torch, CUDA) are captured first and put back
after, so a search leaves an interrupted-and-resumed run bit-identical to one that never
searched. The networks run in the mode the caller left them in: a training-mode search
reproduces what training computed (dropout from the sample's own seeds), and may move
BatchNorm running statistics, which the rollback that follows reloads anyway.

Every rank of a job calls :func:`find_culprits` with the same number of micro-batches of
the same size (ZeRO-3 forwards are collectives).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch.utils.data import default_collate

from engine.checkpoint.state import capture_rng, restore_rng
from engine.data.loader import SeededDataset
from engine.events.storage import EventStorage
from engine.sentinel.records import encode_number

Item = Tuple[int, int]  # (dataset index, sample seed)


@dataclass
class Verdict:
    """What one forward of some samples gave: every scalar output, and the names of the non-finite ones."""

    values: Dict[str, float]
    nonfinite: List[str]

    @property
    def finite(self) -> bool:
        return not self.nonfinite


@dataclass
class SampleVerdict:
    """One sample run alone: where it sat in the step, which sample it is, what it gave."""

    micro_batch: int
    position: int
    index: int
    seed: int
    verdict: Verdict

    def to_json(self) -> Dict[str, Any]:
        return {"micro_batch": self.micro_batch, "position": self.position, "index": self.index, "seed": self.seed,
                "nonfinite": list(self.verdict.nonfinite), "values": {k: encode_number(v) for k, v in self.verdict.values.items()}}


@dataclass
class MicroBatchVerdict:
    """One micro-batch: its items, what it gave as a whole, and each of its samples alone."""

    micro_batch: int
    items: List[Item]
    whole: Verdict
    samples: List[SampleVerdict] = field(default_factory=list)

    @property
    def culprits(self) -> List[SampleVerdict]:
        """The samples that are non-finite on their own."""
        return [s for s in self.samples if not s.verdict.finite]


def find_culprits(model: Any, dataset: Any, micro_batches: Sequence[Sequence[Item]], *, epoch: Any = None,
                  collate_fn: Optional[Callable[[List[Any]], Any]] = None,
                  seed_per_sample: bool = True) -> List[MicroBatchVerdict]:
    """Re-run each micro-batch, whole and sample by sample, and say which outputs are non-finite.

    Args:
        model: the model bundle (``eval_step(batch)``; ``last_epoch`` is set to ``epoch`` meanwhile).
        dataset: the training data set as the loader wraps it (``SeededDataset`` is added here).
        micro_batches: per micro-batch of the step, its ``(dataset_index, sample_seed)`` items in order.
        epoch: the loop counter the step ran with (``run_step``'s ``epoch``).
        collate_fn: the training loader's collate function (None: torch's default).
        seed_per_sample: ``dataloader.seed_per_sample`` of the run (off: samples are loaded unseeded
            and augmentations may differ from what training drew).

    Returns:
        One :class:`MicroBatchVerdict` per micro-batch, in order.
    """
    seeded = SeededDataset(dataset, seed_per_sample)
    collate = collate_fn or default_collate
    saved_rng, saved_epoch = capture_rng(), getattr(model, "last_epoch", None)
    try:
        model.last_epoch = epoch
        verdicts = []
        for m, items in enumerate(micro_batches):
            items = [(int(i), int(s)) for i, s in items]
            samples = seeded.__getitems__(items)
            verdict = MicroBatchVerdict(m, items, _forward(model, collate(samples)))
            for position, ((index, seed), sample) in enumerate(zip(items, samples)):
                alone = _forward(model, collate([sample]))
                verdict.samples.append(SampleVerdict(m, position, index, seed, alone))
            verdicts.append(verdict)
        return verdicts
    finally:
        model.last_epoch = saved_epoch
        restore_rng(saved_rng)


def _forward(model: Any, batch: Any) -> Verdict:
    """``eval_step`` on ``batch`` under no_grad, in a storage of its own (the training step's stays untouched)."""
    with EventStorage() as storage, torch.no_grad():
        output = model.eval_step(batch)
        outputs = dict(storage.pop_step())
    if isinstance(output, torch.Tensor):
        outputs["loss"] = output
    elif isinstance(output, Mapping):
        outputs.update(output)
    values: Dict[str, float] = {}
    nonfinite: List[str] = []
    for name, value in outputs.items():
        if isinstance(value, bool) or not isinstance(value, (torch.Tensor, float, int)):
            continue
        tensor = torch.as_tensor(value.detach() if isinstance(value, torch.Tensor) else value)
        if not tensor.is_floating_point():
            continue
        if tensor.numel() == 1:
            values[name] = float(tensor.reshape(()).float())
        if not bool(torch.isfinite(tensor).all()):
            nonfinite.append(name)
    return Verdict(values, nonfinite)


def describe(verdicts: Sequence[MicroBatchVerdict]) -> List[str]:
    """One line per micro-batch: its non-finite outputs and the culprit samples (index, seed, outputs)."""
    lines = []
    for v in verdicts:
        if v.whole.finite and not v.culprits:
            lines.append(f"micro-batch {v.micro_batch} ({len(v.items)} samples): every output finite")
            continue
        whole = ", ".join(v.whole.nonfinite) or "nothing as a whole"
        culprits = "; ".join(f"sample {s.position} (dataset index {s.index}, seed {s.seed}): {', '.join(s.verdict.nonfinite)}"
                             for s in v.culprits) or "no sample on its own"
        lines.append(f"micro-batch {v.micro_batch} ({len(v.items)} samples): non-finite {whole}; culprits: {culprits}")
    return lines
