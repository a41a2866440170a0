"""What every engine loss shares: ``lambda_weight``, input checks, device and dtype handling.

A loss is an ``nn.Module`` whose ``forward(*inputs)`` returns ``compute(*inputs) * lambda_weight``.
Inputs are checked before computing because several torch losses accept shapes that do
not fit (``mse_loss`` broadcasts (N, 1) against (N,) with only a warning) and because an
error that names the expected shapes saves a debugging session.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from engine.errors import ConfigError, EngineError

REDUCTIONS = ("mean", "sum", "none")


class LossInputError(EngineError, ValueError):
    """The tensors given to a loss do not fit it (count, type or shape)."""


class WeightedLoss(nn.Module):
    """Base of every registered loss: checks inputs, then ``compute(*inputs) * lambda_weight``.

    Subclasses set ``arguments`` (the names of the inputs, used in error messages and
    to check ``input_name`` lengths) and implement ``compute``; they override
    ``check_inputs`` when the inputs are not two tensors of one shape.
    """

    arguments: Tuple[str, ...] = ("pred", "target")

    def __init__(self, lambda_weight: float = 1.0) -> None:
        super().__init__()
        if not isinstance(lambda_weight, (int, float)) or isinstance(lambda_weight, bool):
            raise ConfigError(f"lambda_weight must be a number, got {lambda_weight!r}")
        self.lambda_weight = float(lambda_weight)

    def forward(self, *inputs: Any) -> Tensor:
        if len(inputs) != len(self.arguments):
            raise LossInputError(
                f"{type(self).__name__} expects {len(self.arguments)} inputs "
                f"({', '.join(self.arguments)}), got {len(inputs)}"
            )
        for name, value in zip(self.arguments, inputs):
            if not isinstance(value, Tensor):
                raise LossInputError(f"{type(self).__name__}: {name} must be a tensor, got {type(value).__name__}")
        self.check_inputs(*inputs)
        self._follow_device(inputs[0].device)
        # Half-precision inputs (bf16/fp16 under DeepSpeed) are upcast: reductions over
        # millions of elements lose too much precision in 16 bits, and buffers such as
        # class weights are float32.
        inputs = tuple(t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in inputs)
        return self.compute(*inputs) * self.lambda_weight

    def compute(self, *inputs: Tensor) -> Tensor:
        raise NotImplementedError

    def check_inputs(self, *inputs: Tensor) -> None:
        expect_same_shape(*inputs, names=self.arguments)

    def _follow_device(self, device: torch.device) -> None:
        # Composes are built in a model's __init__, often before the model knows its
        # device; moving on first use spares every user a `.to(device)` on the loss.
        for tensor in self.buffers():
            if tensor.device != device:
                self.to(device)
            return
        for tensor in self.parameters():
            if tensor.device != device:
                self.to(device)
            return

    def extra_repr(self) -> str:
        return f"lambda_weight={self.lambda_weight}"


def shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def expect_same_shape(*tensors: Tensor, names: Sequence[str]) -> None:
    """Raise ``LossInputError`` unless every tensor has the shape of the first."""
    first = tensors[0].shape
    for name, tensor in zip(names[1:], tensors[1:]):
        if tensor.shape != first:
            raise LossInputError(
                f"{name} shape {shape_str(tensor.shape)} does not fit {names[0]} shape "
                f"{shape_str(first)}: expected the same shape"
            )


def expect_class_target(pred: Tensor, target: Tensor, *, allow_probabilities: bool = True) -> None:
    """Check a classification pair: pred (N, C, *) scores, target (N, *) indices or (N, C, *) probabilities."""
    if pred.dim() == 0:
        raise LossInputError("pred must have a class dimension, got a scalar")
    expected = pred.shape[:1] + pred.shape[2:] if pred.dim() > 1 else torch.Size([])
    if target.shape == expected and not target.is_floating_point():
        return
    if allow_probabilities and target.shape == pred.shape and target.is_floating_point():
        return
    wanted = f"integer class indices of shape {shape_str(expected)}"
    if allow_probabilities:
        wanted += f" or float class probabilities of shape {shape_str(pred.shape)}"
    raise LossInputError(
        f"target shape {shape_str(target.shape)} ({str(target.dtype).replace('torch.', '')}) does not fit "
        f"pred shape {shape_str(pred.shape)}: expected {wanted}"
    )


def drop_label_channel(pred: Tensor, target: Tensor) -> Tensor:
    """Class indices stored as (N, 1, *) (how segmentation masks are often loaded) as (N, *).

    Integer targets of that shape beside a (N, C, *) pred are labels with a channel of one;
    the seed's class-index losses accepted them. Any other target is returned as it is.
    """
    if (pred.dim() >= 2 and target.dim() == pred.dim() and target.shape[1] == 1
            and target.shape[2:] == pred.shape[2:] and not target.is_floating_point()):
        return target.squeeze(1)
    return target


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return reduction


def reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def as_tensor(value: Any, name: str) -> Optional[Tensor]:
    """Config files give class weights as lists; torch losses want float tensors."""
    if value is None or isinstance(value, Tensor):
        return value
    try:
        return torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"{name} must be a tensor or a list of numbers, got {value!r}") from None
