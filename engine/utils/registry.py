"""fvcore's registry with errors that help: closest names on a miss, config paths on bad args."""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional

from fvcore.common.registry import Registry as _FvcoreRegistry

from engine.errors import ConfigError, RegistryError
from engine.utils.suggest import did_you_mean


class Registry(_FvcoreRegistry):
    """A name -> class registry (fvcore's) whose lookups and builds fail with clear messages."""

    def get(self, name: str) -> Any:
        obj = self._obj_map.get(name)
        if obj is None:
            known = sorted(self._obj_map)
            raise RegistryError(
                f"No object named {name!r} in registry {self._name}.{did_you_mean(name, known)} "
                f"Registered: {', '.join(known) if known else '(none: was the module that registers it imported?)'}"
            )
        return obj

    def names(self) -> list:
        """Registered names, sorted."""
        return sorted(self._obj_map)

    def build(self, spec: Mapping[str, Any], *, where: str, name_key: str = "name", **extra: Any) -> Any:
        """Instantiate ``spec[name_key]`` with the other items of ``spec`` as keyword arguments.

        Args:
            spec: ``dict(name=..., **params)`` as written in a config file.
            where: the config key path of ``spec``, named in every error.
            name_key: the key holding the registered name.
            extra: keyword arguments that engine adds (e.g. a dataset for mosaic).

        Returns:
            The constructed object.
        """
        if not isinstance(spec, Mapping) or name_key not in spec:
            raise ConfigError(f"{where}: expected a dict with a {name_key!r} key, got {spec!r}")
        name = spec[name_key]
        params = {k: v for k, v in spec.items() if k != name_key}
        params.update(extra)
        return instantiate(self.get_at(name, where), params, where=where)

    def get_at(self, name: Any, where: str) -> Any:
        """``get`` whose error also names the config key path that asked for ``name``."""
        try:
            return self.get(name)
        except RegistryError as exc:
            raise RegistryError(f"{where}.name: {exc}") from None


def instantiate(factory: Any, params: Mapping[str, Any], *, where: str, args: tuple = ()) -> Any:
    """Call ``factory(*args, **params)``; a bad keyword fails naming the config path.

    The signature is checked before the call so that a ``TypeError`` raised *inside* the
    constructor (a real bug) is not mistaken for a misspelled parameter.
    """
    check_signature(factory, params, where=where, n_args=len(args))
    return factory(*args, **params)


def check_signature(factory: Any, params: Mapping[str, Any], *, where: str, n_args: int = 0,
                    require_all: bool = True) -> None:
    """Whether ``factory(<n_args positionals>, **params)`` would bind, without calling it.

    The config check uses it for constructors too costly to run before training (datasets
    that read files, networks, the optimizer DeepSpeed will build).

    Args:
        factory: a class or function.
        params: the keyword arguments the config gives it.
        where: the config key path of ``params``, named in the error.
        n_args: positional arguments the caller adds (the parameters of an optimizer).
        require_all: whether a required parameter missing from ``params`` is an error; False
            where the calling code may add arguments of its own (a model building its network).

    Raises:
        ConfigError: an unexpected or a missing parameter, with the closest accepted names.
    """
    problem = _signature_problem(factory, params, n_args=n_args, require_all=require_all)
    if problem:
        raise ConfigError(f"{where}: {problem} for {_qualname(factory)}")


def _signature_problem(factory: Any, params: Mapping[str, Any], n_args: int, require_all: bool = True) -> Optional[str]:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return None
    supplied = [p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:n_args]
    accepted = [
        p.name for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in supplied
    ]
    has_var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    if not has_var_kw:
        for key in params:
            if key not in accepted:
                return f"unexpected parameter {key!r}.{did_you_mean(key, accepted)} Accepted: {', '.join(accepted)}"
    if not require_all:
        return None
    positional = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    missing = [
        p.name for p in positional[n_args:]
        if p.default is p.empty and p.name not in params
    ] + [
        p.name for p in sig.parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.default is p.empty and p.name not in params
    ]
    if missing:
        return f"missing required parameter(s) {', '.join(map(repr, missing))}"
    return None


def _qualname(factory: Any) -> str:
    return getattr(factory, "__qualname__", repr(factory))
