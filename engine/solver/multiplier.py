"""LR multipliers: iteration -> factor of the base LR, a warm-up in front of an fvcore shape.

The shapes (multi-step, cosine, polynomial) are fvcore ``ParamScheduler`` objects over training
progress ``where = iteration / max_iter``; the warm-up is applied in iteration space rather
than through ``CompositeParamScheduler`` because fvcore compares progress with a 1e-6
tolerance, which moves a step boundary by one iteration or more once ``max_iter`` exceeds a
million. Semantics follow detectron2's ``WarmupParamScheduler`` with fixed (not rescaled)
intervals: the shape sees absolute progress, so ``steps`` are absolute iterations, and a
linear warm-up ramps from ``warmup_factor * shape(0)`` to the shape's value at the end of
the warm-up, so the curve is continuous there.
"""

from __future__ import annotations

import bisect
import inspect
import logging
from typing import Any, Callable, Dict, List, Mapping, Sequence

from fvcore.common.param_scheduler import (
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
    PolynomialDecayParamScheduler,
)

from engine.errors import ConfigError
from engine.utils.registry import instantiate
from engine.utils.suggest import did_you_mean, typo_of

logger = logging.getLogger(__name__)

WARMUP_METHODS = ("linear", "constant")


class _MultiStepAtIterations(MultiStepParamScheduler):
    """fvcore's multi-step shape, evaluated at the exact iteration.

    fvcore adds 1e-6 to ``where`` before scaling by ``num_updates``; past a million updates
    that epsilon is a whole iteration and a decay would happen one step early. Rounding
    ``where * num_updates`` recovers the integer iteration the caller divided.
    """

    def __call__(self, where: float) -> float:
        if where > 1.0:
            raise RuntimeError(f"where in ParamScheduler must be in [0, 1]: got {where}")
        iteration = int(round(where * self._num_updates))
        return self._param_schedule[bisect.bisect_right(self._milestones, iteration)]


class _Offset(ParamScheduler):
    """``offset + inner(where)``: lets a shape that decays to 0 decay to ``offset`` instead."""

    def __init__(self, inner: ParamScheduler, offset: float) -> None:
        self._inner = inner
        self._offset = offset

    def __call__(self, where: float) -> float:
        return self._offset + self._inner(where)


# ---- shapes: (max_iter, **params) -> ParamScheduler over progress in [0, 1] -----------------

def _multistep_shape(max_iter: int, steps: Sequence[int], gamma: float = 0.1) -> ParamScheduler:
    """Multiply by ``gamma`` at each iteration in ``steps``.

    Steps at or past ``max_iter`` can never be reached; they are dropped with a warning
    rather than rejected, as the seed's example config lists one past its ``max_iter``.
    """
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence):
        raise ConfigError(f"lr_scheduler_param.steps: expected a list of iterations, got {steps!r}")
    steps = [int(s) for s in steps]
    if any(b <= a for a, b in zip(steps, steps[1:])) or (steps and steps[0] <= 0):
        raise ConfigError(f"lr_scheduler_param.steps: must be positive and strictly increasing, got {steps}")
    kept = [s for s in steps if s < max_iter]
    if len(kept) < len(steps):
        logger.warning("LR steps %s are not before max_iter=%d and will never be reached; ignored",
                       [s for s in steps if s >= max_iter], max_iter)
    values = [float(gamma) ** k for k in range(len(kept) + 1)]
    return _MultiStepAtIterations(values=values, milestones=kept, num_updates=max_iter)


def _cosine_shape(max_iter: int, end_value: float = 0.0, start_value: float = 1.0) -> ParamScheduler:
    """Half a cosine from ``start_value`` down to ``end_value`` (multiples of the base LR) at ``max_iter``.

    ``start_value`` is the seed's; it scales the whole curve, warm-up included.
    """
    return CosineParamScheduler(start_value=float(start_value), end_value=float(end_value))


def _polynomial_shape(max_iter: int, power: float = 0.9, end_value: float = 0.0) -> ParamScheduler:
    """``end_value + (1 - end_value) * (1 - t / max_iter) ** power``, a multiple of the base LR."""
    end_value = float(end_value)
    return _Offset(PolynomialDecayParamScheduler(base_value=1.0 - end_value, power=float(power)), end_value)


#: ``lr_scheduler_param.name`` -> shape builder. Add an entry to make a new name available to
#: ``LRMultiplierScheduler``; the builder gets ``max_iter`` and the other items of the dict.
LR_MULTIPLIER_SHAPES: Dict[str, Callable[..., ParamScheduler]] = {
    "WarmupMultiStepLR": _multistep_shape,
    "WarmupCosineLR": _cosine_shape,
    "WarmupPolynomialDecay": _polynomial_shape,
}


def build_shape(lr_scheduler_param: Mapping[str, Any], max_iter: int) -> ParamScheduler:
    """The fvcore shape named by ``lr_scheduler_param['name']``, built from its other items.

    Items the named shape does not use (``gamma``, ``steps`` under ``WarmupCosineLR``) are
    left out with a warning, as the seed read only the ones it needed: a base config's
    multi-step parameters survive a child switching to cosine. An item that is a likely
    misspelling of a parameter of any shape (``gama``) is still an error.
    """
    if not isinstance(lr_scheduler_param, Mapping) or "name" not in lr_scheduler_param:
        raise ConfigError(
            f"lr_scheduler_param: expected a dict with a 'name' key (one of "
            f"{', '.join(sorted(LR_MULTIPLIER_SHAPES))}), got {lr_scheduler_param!r}"
        )
    _check_max_iter(max_iter)
    name = lr_scheduler_param["name"]
    builder = _lookup_shape(name)
    params = {k: v for k, v in lr_scheduler_param.items() if k != "name"}
    used = _shape_parameters(builder)
    unused = [k for k in params if k not in used]
    for key in unused:
        meant = typo_of(str(key), sorted(set(used) | _all_shape_parameters()))
        if meant is not None and key not in _all_shape_parameters():
            raise ConfigError(
                f"lr_scheduler_param.{key}: unknown parameter of {name!r}. Did you mean {meant!r}? "
                f"{name!r} reads: {', '.join(used)}"
            )
    if unused:
        logger.warning("lr_scheduler_param: %s not used by %r (it reads %s); ignored",
                       ", ".join(map(str, unused)), name, ", ".join(used))
    return instantiate(builder, {k: v for k, v in params.items() if k in used}, where="lr_scheduler_param",
                       args=(max_iter,))


def _shape_parameters(builder: Callable[..., ParamScheduler]) -> List[str]:
    """The ``lr_scheduler_param`` items a shape builder reads (all its parameters but ``max_iter``)."""
    return [p for p in inspect.signature(builder).parameters if p != "max_iter"]


def _all_shape_parameters() -> set:
    return {p for builder in LR_MULTIPLIER_SHAPES.values() for p in _shape_parameters(builder)}


def _check_max_iter(max_iter: Any) -> None:
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
        raise ConfigError(f"max_iter: expected a positive integer, got {max_iter!r}")


def _lookup_shape(name: Any) -> Callable[..., ParamScheduler]:
    if name in LR_MULTIPLIER_SHAPES:
        return LR_MULTIPLIER_SHAPES[name]
    by_lower = {k.lower(): v for k, v in LR_MULTIPLIER_SHAPES.items()}
    if isinstance(name, str) and name.lower() in by_lower:
        return by_lower[name.lower()]
    known = sorted(LR_MULTIPLIER_SHAPES)
    raise ConfigError(
        f"lr_scheduler_param.name: unknown schedule {name!r}.{did_you_mean(str(name), known)} "
        f"Known: {', '.join(known)}"
    )


class WarmupMultiplier:
    """Iteration -> multiplier of the base LR: warm-up for ``warmup_iter`` steps, then ``shape``.

    Iterations past ``max_iter`` keep the final value, so a run that overshoots by a step
    (epoch rounding, evaluation after the last step) does not fail.
    """

    def __init__(
        self,
        shape: ParamScheduler,
        max_iter: int,
        warmup_factor: float = 0.001,
        warmup_iter: int = 1000,
        warmup_method: str = "linear",
    ) -> None:
        _check_max_iter(max_iter)
        if not isinstance(warmup_iter, int) or isinstance(warmup_iter, bool) or warmup_iter < 0:
            raise ConfigError(f"warmup_iter: expected a non-negative integer (the default is 1000 steps), got {warmup_iter!r}")
        if warmup_iter > max_iter:
            # The seed clamps the warm-up to the run (a smoke run with a small max_iter keeps working).
            logger.warning("warmup_iter=%d is longer than max_iter=%d: clamped to %d, so the whole run is warm-up",
                           warmup_iter, max_iter, max_iter)
            warmup_iter = max_iter
        if warmup_method not in WARMUP_METHODS:
            raise ConfigError(
                f"warmup_method: expected one of {', '.join(WARMUP_METHODS)}, got {warmup_method!r}."
                f"{did_you_mean(str(warmup_method), WARMUP_METHODS)}"
            )
        self.shape = shape
        self.max_iter = max_iter
        self.warmup_iter = warmup_iter
        start = float(warmup_factor) * shape(0.0)
        if warmup_method == "linear":
            self._warmup: ParamScheduler = LinearParamScheduler(start, shape(warmup_iter / max_iter))
        else:
            self._warmup = ConstantParamScheduler(start)

    def __call__(self, iteration: int) -> float:
        iteration = min(max(int(iteration), 0), self.max_iter)
        if iteration < self.warmup_iter:
            return self._warmup(iteration / self.warmup_iter)
        return self.shape(iteration / self.max_iter)
