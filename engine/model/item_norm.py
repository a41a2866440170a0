"""Loss weights that make an accumulated, data-parallel step one big batch's per-item mean.

A micro-batch's loss is usually a mean over its own items (tokens that are not padding,
pixels that are not ignored). DeepSpeed divides each micro-batch's loss by the
accumulation steps and averages gradients over data-parallel ranks, so the update is a
mean of means: micro-batches with few items weigh as much as full ones, and the result
changes with the accumulation and the world size. With the count ``n_i`` of every
micro-batch of the step known before the first backward, weighting micro-batch ``i`` by

    w_i = n_i * accumulation * dp_size / N        (N: the step's items, all micro-batches, all ranks)

undoes both divisions, and the step's gradient is ``sum_i n_i * grad(loss_i) / N``: the
gradient of one batch's per-item mean, whatever the layout. The weight goes into the loss
before ``backward``, so every ZeRO stage, offload, gradient clipping and fp16 loss scaling
see the final gradient; nothing is rescaled after the fact. The price is one all-reduce of
one number per step (the ranks' item counts).

Why counts come before the forward (``BaseModel.num_items(data)``) rather than with the
loss: the first micro-batch's backward needs ``N``, which depends on micro-batches not yet
run; learning it afterwards would mean keeping every micro-batch's graph alive, or
rescaling gradients inside each ZeRO optimizer.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Optional, Sequence

import torch
import torch.distributed as dist


class ItemWeights:
    """The weights of one optimizer step's micro-batches, handed out in order.

    Args:
        accumulation: micro-batches per optimizer step on each rank.
        dp_size: data-parallel ranks whose gradients DeepSpeed averages.
        group: their process group (``None``: the default group), for the count's all-reduce.
        device: where the counts are reduced (the device the collective backend uses).
    """

    def __init__(self, accumulation: int, dp_size: int, group: Any, device: torch.device) -> None:
        self.accumulation = accumulation
        self.dp_size = dp_size
        self.group = group
        self.device = device
        self._backward: Deque[torch.Tensor] = deque()  # what each micro-batch's loss is multiplied by
        self._logged: Deque[torch.Tensor] = deque()  # what its logged loss is multiplied by
        self.step_items: Optional[torch.Tensor] = None  # N of the latest step (all ranks)

    def plan(self, counts: Sequence[Any]) -> None:
        """Take the item counts of this rank's micro-batches of one step (ints or 0-dim tensors).

        Every data-parallel rank calls it at the same point of the step (it all-reduces).
        """
        if len(counts) != self.accumulation:
            raise ValueError(f"{len(counts)} item counts for {self.accumulation} micro-batches")
        local = torch.stack([torch.as_tensor(c, dtype=torch.float64).reshape(()) for c in counts]).to(self.device)
        local_total = local.sum()
        total = local_total.clone()
        if self.dp_size > 1:
            dist.all_reduce(total, group=self.group)
        self.step_items = total
        # no items anywhere: every weight 0 (a zero gradient), not 0/0
        backward = local * (self.accumulation * self.dp_size) / total.clamp(min=1)
        # the log shows this rank's per-item mean, as the loss line always showed this rank's mean
        logged = local * self.accumulation / local_total.clamp(min=1)
        self._backward = deque(backward.float().unbind())
        self._logged = deque(logged.float().unbind())

    @property
    def pending(self) -> bool:
        """Whether weights of the current step remain to be handed out."""
        return bool(self._backward)

    def next(self) -> "tuple[torch.Tensor, torch.Tensor]":
        """(backward weight, logged weight) of the next micro-batch of the step."""
        return self._backward.popleft(), self._logged.popleft()


class WeightedLoss:
    """A pipeline's ``loss_fn`` with each training micro-batch's loss multiplied by its ``ItemWeights`` weight.

    DeepSpeed's pipeline engine calls the loss function once per micro-batch, in order, on the
    last stage; evaluation calls (no weights pending) pass through unweighted.
    """

    def __init__(self, loss_fn: Any) -> None:
        self.loss_fn = loss_fn
        self.weights: Optional[ItemWeights] = None  # set once the engine (and its data-parallel group) exists

    def __call__(self, outputs: Any, labels: Any) -> torch.Tensor:
        loss = self.loss_fn(outputs, labels)
        if self.weights is not None and self.weights.pending:
            backward_weight, _ = self.weights.next()
            loss = loss.float() * backward_weight.to(loss.device)
        return loss
