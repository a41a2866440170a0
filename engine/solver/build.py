"""Optimizers and LR schedulers from the config's ``{type, params}`` dicts.

Every failure caused by the config is a ``ConfigError`` that names the key path
(``<where>.type`` or ``<where>.params``), so a typo ends the run with one clear line
before any process group starts (see ``lr_scheduler_factory``).
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional

import torch
from torch.optim import Optimizer
from torch.optim import lr_scheduler as torch_lr_scheduler
from torch.optim.lr_scheduler import LRScheduler

from engine.errors import ConfigError
from engine.solver._util import plain
from engine.solver.deepspeed_optimizers import (  # noqa: F401  (re-exported: DESIGN names build.py)
    DEEPSPEED_OPTIMIZER_TYPES,
    deepspeed_optimizer_config,
    deepspeed_optimizer_name,
)
from engine.solver.lr_scheduler import (
    LRMultiplierScheduler,
    WarmupCosineLR,
    WarmupMultiStepLR,
    WarmupPolynomialDecay,
)
from engine.utils.registry import Registry, instantiate
from engine.utils.quiet import quiet
from engine.utils.suggest import did_you_mean

#: LR scheduler ``type`` names: engine's schedulers and torch's. Register a class here to make
#: it configurable; its constructor must take the optimizer first.
LR_SCHEDULER_REGISTRY = Registry("LR_SCHEDULER")

#: Optimizers beyond ``torch.optim`` (looked up first). Constructor: ``(params, **kwargs)``.
OPTIMIZER_REGISTRY = Registry("OPTIMIZER")

# Torch schedulers left out, and why (the reason is the error a config naming one gets).
_UNSUPPORTED = {
    "LambdaLR": "its lr_lambda is a Python function, which a config cannot hold",
    "MultiplicativeLR": "its lr_lambda is a Python function, which a config cannot hold",
    "ReduceLROnPlateau": (
        "it steps on a validation metric, but engine's schedulers are stepped by DeepSpeed once per "
        "optimizer step without one (DeepSpeed would pass the batch size as the metric)"
    ),
}
_BASES = {"LRScheduler", "_LRScheduler"}
# Torch schedulers whose ``schedulers`` argument is a list of nested ``{type, params}`` specs.
_NESTED = (torch_lr_scheduler.SequentialLR, torch_lr_scheduler.ChainedScheduler)


def _register_builtin_schedulers() -> None:
    for cls in (LRMultiplierScheduler, WarmupMultiStepLR, WarmupCosineLR, WarmupPolynomialDecay):
        LR_SCHEDULER_REGISTRY.register(cls)
    for name in torch_lr_scheduler.__all__:
        obj = getattr(torch_lr_scheduler, name, None)
        if inspect.isclass(obj) and issubclass(obj, LRScheduler) and name not in set(_UNSUPPORTED) | _BASES:
            LR_SCHEDULER_REGISTRY.register(obj)


_register_builtin_schedulers()


# ---- LR schedulers ---------------------------------------------------------------------------

def build_lr_scheduler(
    spec: Optional[Mapping[str, Any]],
    optimizer: Optimizer,
    *,
    where: str,
    defaults: Optional[Mapping[str, Any]] = None,
) -> Optional[LRScheduler]:
    """The scheduler a config's ``lr_scheduler {enabled, type, params}`` asks for, or None.

    Args:
        spec: the config's dict; None, or ``enabled`` false or absent, means no scheduler.
        optimizer: the torch optimizer whose LRs it drives.
        where: the config key path of ``spec`` (e.g. ``solver.generator.lr_scheduler``).
        defaults: values engine knows (e.g. ``max_iter`` from ``solver.max_iter``) used for
            parameters the scheduler accepts and ``params`` leaves out.

    ``LambdaLR``, ``MultiplicativeLR`` and ``ReduceLROnPlateau`` are refused with the reason
    (see ``_UNSUPPORTED``).
    """
    if spec is None or not spec.get("enabled", False):
        return None
    return _build_scheduler(spec.get("type"), spec.get("params") or {}, optimizer, where=where, defaults=defaults)


def lr_scheduler_factory(
    spec: Optional[Mapping[str, Any]],
    *,
    where: str,
    defaults: Optional[Mapping[str, Any]] = None,
) -> Optional[Callable[[Optimizer], LRScheduler]]:
    """Check ``spec`` now and return ``optimizer -> scheduler`` for ``deepspeed.initialize``.

    When DeepSpeed builds the optimizer from ds_config the scheduler can only be made
    afterwards; DeepSpeed accepts a callable for that. Checking here, by building once on a
    throwaway optimizer, makes a bad type or parameter fail at config time instead of
    after the process group and the model exist.
    """
    if spec is None or not spec.get("enabled", False):
        return None
    type_name, params = spec.get("type"), plain(spec.get("params") or {})
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with quiet("engine.solver"):
        _build_scheduler(type_name, params, probe, where=where, defaults=defaults)

    def factory(optimizer: Optimizer) -> LRScheduler:
        return _build_scheduler(type_name, params, optimizer, where=where, defaults=defaults)

    return factory


def _build_scheduler(
    type_name: Any,
    params: Mapping[str, Any],
    optimizer: Optimizer,
    *,
    where: str,
    defaults: Optional[Mapping[str, Any]] = None,
) -> LRScheduler:
    unsupported = {k.lower(): k for k in _UNSUPPORTED}
    if isinstance(type_name, str) and type_name.lower() in unsupported:
        name = unsupported[type_name.lower()]
        raise ConfigError(f"{where}.type: {name} is not supported: {_UNSUPPORTED[name]}")
    cls = _lookup(type_name, LR_SCHEDULER_REGISTRY.names(), LR_SCHEDULER_REGISTRY.get, where=f"{where}.type",
                  kind="LR scheduler")
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}.params: expected a dict of keyword arguments, got {params!r}")
    params = plain(params)
    _fill_defaults(cls, params, defaults)
    if issubclass(cls, _NESTED):
        return _build_nested(cls, params, optimizer, where=where, defaults=defaults)
    with _as_config_error(f"{where}.params", cls):
        return instantiate(cls, params, where=f"{where}.params", args=(optimizer,))


def _build_nested(cls: type, params: Dict[str, Any], optimizer: Optimizer, *, where: str,
                  defaults: Optional[Mapping[str, Any]]) -> LRScheduler:
    """``SequentialLR`` / ``ChainedScheduler``: build each listed ``{type, params}`` first."""
    subs = params.get("schedulers")
    if not isinstance(subs, list) or not subs:
        raise ConfigError(f"{where}.params.schedulers: expected a list of dict(type=..., params=...), got {subs!r}")
    built = []
    for i, sub in enumerate(subs):
        sub_where = f"{where}.params.schedulers[{i}]"
        if not isinstance(sub, Mapping) or "type" not in sub:
            raise ConfigError(f"{sub_where}: expected dict(type=..., params=...), got {sub!r}")
        built.append(_build_scheduler(sub["type"], sub.get("params") or {}, optimizer, where=sub_where,
                                      defaults=defaults))
    params = dict(params, schedulers=built)
    with _as_config_error(f"{where}.params", cls):
        if cls is torch_lr_scheduler.ChainedScheduler:
            return instantiate(cls, dict(params, optimizer=optimizer), where=f"{where}.params")
        return instantiate(cls, params, where=f"{where}.params", args=(optimizer,))


def _fill_defaults(cls: type, params: Dict[str, Any], defaults: Optional[Mapping[str, Any]]) -> None:
    if not defaults:
        return
    accepted = inspect.signature(cls).parameters
    for key, value in defaults.items():
        if key in accepted and key not in params:
            params[key] = value


# ---- optimizers ------------------------------------------------------------------------------

def torch_optimizer_names() -> List[str]:
    """The ``torch.optim`` optimizer classes by name, sorted."""
    return sorted(
        name for name, obj in vars(torch.optim).items()
        if inspect.isclass(obj) and issubclass(obj, Optimizer) and obj is not Optimizer
    )


def build_optimizer(spec: Mapping[str, Any], parameters: Iterable[Any], *, where: str) -> Optimizer:
    """A client optimizer from a config's ``optimizer {type, params}``.

    ``type`` is a name in ``OPTIMIZER_REGISTRY`` or a ``torch.optim`` class, matched exactly
    first and then case-insensitively (``adam`` -> ``Adam``). Used when DeepSpeed does not
    build the type itself (``deepspeed_optimizer_name`` returns None).
    """
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"{where}: expected dict(type=..., params=...), got {spec!r}")
    params = spec.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}.params: expected a dict of keyword arguments, got {params!r}")
    registered = set(OPTIMIZER_REGISTRY.names())
    names = sorted(registered | set(torch_optimizer_names()))

    def get(name: str) -> type:
        return OPTIMIZER_REGISTRY.get(name) if name in registered else getattr(torch.optim, name)

    cls = _lookup(spec["type"], names, get, where=f"{where}.type", kind="optimizer (torch.optim or OPTIMIZER_REGISTRY)")
    with _as_config_error(f"{where}.params", cls):
        return instantiate(cls, plain(params), where=f"{where}.params", args=(parameters,))


# ---- shared ----------------------------------------------------------------------------------

def _lookup(name: Any, names: List[str], get: Callable[[str], Any], *, where: str, kind: str) -> Any:
    """Exact name first, then a unique case-insensitive match; else a ConfigError with close names."""
    if isinstance(name, str) and name:
        if name in names:
            return get(name)
        folded = [n for n in names if n.lower() == name.lower()]
        if len(folded) == 1:
            return get(folded[0])
    raise ConfigError(
        f"{where}: unknown {kind} {name!r}.{did_you_mean(str(name), names)} Known: {', '.join(names)}"
    )


@contextlib.contextmanager
def _as_config_error(where: str, cls: type) -> Iterator[None]:
    """Constructor complaints about values (``ValueError``/``TypeError``) as config errors.

    ``instantiate`` already rejects unknown and missing names; this covers values the
    constructor refuses (a negative LR, milestones out of order, a string where a number
    goes). The original exception stays chained for debugging.
    """
    try:
        yield
    except ConfigError as exc:
        if str(exc).startswith(where):
            raise
        raise ConfigError(f"{where}: {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{where}: {cls.__name__} rejected the value: {exc}") from exc
