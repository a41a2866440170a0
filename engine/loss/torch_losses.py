"""The ``torch.nn`` losses, registered under their torch names with ``lambda_weight`` added.

One factory makes every class: each wraps the torch module (so class-weight buffers follow
``.to(device)``), takes exactly the torch constructor's parameters plus ``lambda_weight``,
and checks its inputs' shapes before torch sees them. The binary cross-entropies also take
``ignore_index``, which torch gives only to the class-index losses: elements whose target
is that value count nowhere, and the mean is over the counted ones. ``CrossEntropyLoss``
and ``NLLLoss`` keep torch's (weighted) mean over the counted pixels, except that a batch
with every pixel ignored gives 0 instead of torch's NaN (a random crop of void pixels must
not stop a run as a NaN loss would), and they accept class indices of shape (N, 1, *), as
the seed's did.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.errors import ConfigError
from engine.loss.base import (
    LossInputError,
    WeightedLoss,
    drop_label_channel,
    expect_class_target,
    expect_same_shape,
    shape_str,
)
from engine.loss.build import LOSS_ARCH_REGISTRY
from engine.loss.dense import mean_over_counted
from engine.utils.suggest import did_you_mean

# Parameters that config files write as lists but torch wants as tensors.
_TENSOR_PARAMS = ("weight", "pos_weight")


def _cosine_distance(x: Tensor, y: Tensor) -> Tensor:
    return 1.0 - F.cosine_similarity(x, y)


# Config files cannot hold a function; these names stand for the usual distances.
DISTANCE_FUNCTIONS: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "euclidean": F.pairwise_distance,
    "pairwise": F.pairwise_distance,
    "cosine": _cosine_distance,
}


class TorchLoss(WeightedLoss):
    """A ``torch.nn`` loss times ``lambda_weight``; subclasses set ``torch_cls``."""

    torch_cls: Type[nn.Module]
    #: whether engine adds ``ignore_index`` (for losses whose torch class lacks it)
    adds_ignore_index: bool = False
    #: a class-index loss (CE, NLL): (N, 1, *) labels are accepted, and engine takes the mean so
    #: that a batch with every pixel ignored gives 0, not NaN
    class_labels: bool = False

    def __init__(self, lambda_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(lambda_weight)
        self.ignore_index = kwargs.pop("ignore_index", None) if self.adds_ignore_index else None
        accepted = list(inspect.signature(self.torch_cls).parameters)
        for key in kwargs:
            if key not in accepted:
                raise ConfigError(
                    f"{type(self).__name__}: unexpected parameter {key!r}.{did_you_mean(key, accepted)} "
                    f"Accepted: lambda_weight, {', '.join(accepted)}"
                )
        for key in _TENSOR_PARAMS:
            if kwargs.get(key) is not None and not isinstance(kwargs[key], Tensor):
                try:
                    kwargs[key] = torch.as_tensor(kwargs[key], dtype=torch.float32)
                except (TypeError, ValueError, RuntimeError):
                    raise ConfigError(f"{key} must be a list of numbers, got {kwargs[key]!r}") from None
        distance = kwargs.get("distance_function")
        if isinstance(distance, str):
            if distance not in DISTANCE_FUNCTIONS:
                raise ConfigError(
                    f"distance_function {distance!r} is not known.{did_you_mean(distance, DISTANCE_FUNCTIONS)} "
                    f"Known: {', '.join(DISTANCE_FUNCTIONS)} (or pass a callable)"
                )
            kwargs["distance_function"] = DISTANCE_FUNCTIONS[distance]
        reduction = kwargs.get("reduction", "mean")
        if reduction not in ("mean", "sum", "none"):
            raise ConfigError(f"reduction must be one of mean, sum, none, got {reduction!r}")
        self.reduction = reduction
        self._engine_mean = self.class_labels and reduction == "mean"
        if self.ignore_index is not None or self._engine_mean:  # engine reduces, over the counted elements only
            kwargs["reduction"] = "none"
        self.fn = self.torch_cls(**kwargs)

    def compute(self, *inputs: Tensor) -> Tensor:
        if self.class_labels:
            inputs = (inputs[0], drop_label_channel(*inputs))
        if self._engine_mean:
            return self._class_index_mean(*inputs)
        if self.ignore_index is None:
            return self.fn(*inputs)
        pred, target = inputs
        counted = target != self.ignore_index
        losses = self.fn(pred, torch.where(counted, target, torch.zeros_like(target)))
        return mean_over_counted(losses, counted, self.reduction)


    def _class_index_mean(self, pred: Tensor, target: Tensor) -> Tensor:
        """torch's mean of a class-index loss (weighted by the class weights of counted pixels), 0 when none counts."""
        losses = self.fn(pred, target)
        if target.shape == pred.shape:  # class probabilities: torch divides by the number of samples
            return losses.mean()
        counted = target != self.fn.ignore_index
        if self.fn.weight is None:
            total = counted.sum().to(losses.dtype)
        else:
            total = (self.fn.weight[torch.where(counted, target, torch.zeros_like(target))] * counted).sum()
        return losses.sum() / total.clamp(min=torch.finfo(losses.dtype).tiny)


def _check_class_pair(self: WeightedLoss, pred: Tensor, target: Tensor) -> None:
    expect_class_target(pred, drop_label_channel(pred, target), allow_probabilities=isinstance(self.fn, nn.CrossEntropyLoss))


def _check_multilabel(self: WeightedLoss, pred: Tensor, target: Tensor) -> None:
    expect_same_shape(pred, target, names=self.arguments)
    if pred.dim() not in (1, 2):
        raise LossInputError(f"pred shape {shape_str(pred.shape)}: expected (N, C) or (C,)")


def _check_same(self: WeightedLoss, *inputs: Tensor) -> None:
    expect_same_shape(*inputs, names=self.arguments)


def _register(
    torch_cls: Type[nn.Module],
    check: Callable[..., None] = _check_same,
    arguments: Tuple[str, ...] = ("pred", "target"),
    add_ignore_index: bool = False,
    class_labels: bool = False,
) -> Type[TorchLoss]:
    """Create and register the engine class for ``torch_cls``.

    The generated ``__init__`` carries the torch signature (all keyword-only, plus
    ``lambda_weight``, and ``ignore_index=None`` with ``add_ignore_index``) so the registry
    can reject a misspelled parameter with the closest accepted name before anything is
    constructed.
    """

    def __init__(self: TorchLoss, **kwargs: Any) -> None:
        TorchLoss.__init__(self, **kwargs)

    kw_only = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("lambda_weight", kw_only, default=1.0)]
    params += [p.replace(kind=kw_only) for p in inspect.signature(torch_cls).parameters.values()]
    if add_ignore_index:
        params.append(inspect.Parameter("ignore_index", kw_only, default=None))
    __init__.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    cls = type(torch_cls.__name__, (TorchLoss,), {
        "__init__": __init__,
        "torch_cls": torch_cls,
        "arguments": arguments,
        "adds_ignore_index": add_ignore_index,
        "class_labels": class_labels,
        "check_inputs": check,
        "__module__": __name__,
        "__doc__": f"``torch.nn.{torch_cls.__name__}`` times ``lambda_weight``; same parameters as torch.",
    })
    LOSS_ARCH_REGISTRY.register(cls)
    return cls


_TRIPLET = ("anchor", "positive", "negative")

L1Loss = _register(nn.L1Loss)
MSELoss = _register(nn.MSELoss)
SmoothL1Loss = _register(nn.SmoothL1Loss)
BCELoss = _register(nn.BCELoss, add_ignore_index=True)
BCEWithLogitsLoss = _register(nn.BCEWithLogitsLoss, add_ignore_index=True)
SoftMarginLoss = _register(nn.SoftMarginLoss)
MultiLabelSoftMarginLoss = _register(nn.MultiLabelSoftMarginLoss, _check_multilabel)
NLLLoss = _register(nn.NLLLoss, _check_class_pair, class_labels=True)
CrossEntropyLoss = _register(nn.CrossEntropyLoss, _check_class_pair, class_labels=True)
TripletMarginLoss = _register(nn.TripletMarginLoss, arguments=_TRIPLET)
TripletMarginWithDistanceLoss = _register(nn.TripletMarginWithDistanceLoss, arguments=_TRIPLET)
