"""Reading config files (.py/.yaml), resolving ``_base_`` chains and applying ``--opts``.

A ``.py`` config is a Python module: of its module-level names only the framework's
top-level keys (``trainer``, ``solver``, ``dataloader``, ``output_dir``, ...; any case) and
``_base_`` are config. Every other name is the user's own (``img_size = 608``,
``DATA = os.environ['X']``, imports, helper functions) and is left out, as the seed's
loader did; a name that is a likely misspelling of a framework key and holds that key's
kind of value (``solvr = dict(...)``) is an error instead.

When a child changes the ``type`` of an ``optimizer`` or ``lr_scheduler`` (at any depth),
the base's ``params`` are replaced rather than merged, as in the seed: a base
``SGD(momentum=0.9)`` under a child ``AdamW`` must not hand ``momentum`` to AdamW.
"""

from __future__ import annotations

import ast
import copy
import os
import runpy
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml

from engine.config.defaults import DEFAULTS
from engine.config.schema import Field, Section
from engine.errors import ConfigError
from engine.utils.suggest import typo_of

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"  # a dict with _delete_=True replaces its base instead of merging into it
#: Sections whose ``params`` belong to their ``type``: a child naming another type replaces them.
TYPED_SECTIONS = ("optimizer", "lr_scheduler")


def load_file(path: str) -> Dict[str, Any]:
    """Load one config file and everything its ``_base_`` names, merged, as plain dicts."""
    return _strip_delete_markers(_load_chain(path, ()))


def _strip_delete_markers(value: Any) -> Any:
    """``_delete_`` only steers merging; it must not reach constructors or config.yaml."""
    if isinstance(value, dict):
        return {k: _strip_delete_markers(v) for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, list):
        return [_strip_delete_markers(v) for v in value]
    return value


def _load_chain(path: str, _chain: Sequence[str]) -> Dict[str, Any]:
    path = os.path.abspath(path)
    if path in _chain:
        cycle = " -> ".join(list(_chain[_chain.index(path):]) + [path])
        raise ConfigError(f"{BASE_KEY}: cyclic inheritance: {cycle}")
    if not os.path.isfile(path):
        where = f" (a {BASE_KEY} of {_chain[-1]})" if _chain else ""
        raise ConfigError(f"config file not found: {path}{where}")
    data = _read(path)
    bases = base_paths(path, data.pop(BASE_KEY, None))
    if not bases:
        return data
    merged: Dict[str, Any] = {}
    for base_path in bases:
        merged = merge(merged, _load_chain(base_path, tuple(_chain) + (path,)))
    return merge(merged, data)


def base_paths(path: str, bases: Any) -> List[str]:
    """The files a config's ``_base_`` names (a path or a list of them), relative to ``path``'s folder."""
    if bases is None:
        return []
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a path or a list of paths, got {bases!r}")
    return [b if os.path.isabs(b) else os.path.join(os.path.dirname(path), b) for b in bases]


def _read(path: str) -> Dict[str, Any]:
    ext = os.path.splitext(path)[1].lower()
    if ext in (".yaml", ".yml"):
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    elif ext == ".py":
        try:
            namespace = runpy.run_path(path)
        except Exception as exc:  # a config file is user code: report where it broke, briefly
            raise ConfigError(f"{path}: executing the config file failed: {type(exc).__name__}: {exc}") from None
        data = python_config_names(namespace, path)
    else:
        raise ConfigError(f"{path}: unsupported config file type {ext!r}; expected .py, .yaml or .yml")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def python_config_names(namespace: Mapping[str, Any], path: str) -> Dict[str, Any]:
    """The config part of an executed ``.py`` config: framework keys and ``_base_``.

    Args:
        namespace: the module's globals after running it.
        path: the file, for error messages.

    Returns:
        The framework's top-level keys (any case) and ``_base_``, as written.

    Raises:
        ConfigError: a left-out name is a likely misspelling of a framework key (or of
            ``_base_``) and holds that key's kind of value (a dict for a section), so it was
            almost surely meant as config.
    """
    data: Dict[str, Any] = {}
    for name, value in namespace.items():
        if name == BASE_KEY or name.lower() in DEFAULTS.entries:
            data[name] = value
            continue
        meant = _meant_key(name, value)
        if meant is not None:
            raise ConfigError(
                f"{path}: {name}: not a config key. Did you mean {meant!r}? Names of your own are ignored in a "
                f".py config, but this one is a likely misspelling of {meant!r} and holds a "
                f"{type(value).__name__}; rename it (or, if it is yours, give it a name further from {meant!r})"
            )
    return data


def _meant_key(name: str, value: Any) -> Optional[str]:
    """The framework key a left-out name most likely misspells, if it also holds that key's kind of value."""
    if name.startswith("__"):
        return None
    if isinstance(value, (str, list, tuple)) and typo_of(name, [BASE_KEY]) is not None:
        return BASE_KEY  # a misspelt _base_ would drop the whole inheritance without a word
    if name.startswith("_"):
        return None
    meant = typo_of(name, DEFAULTS.entries)
    return meant if meant is not None and _holds_kind_of(DEFAULTS.entries[meant], value) else None


def _holds_kind_of(spec: Any, value: Any) -> bool:
    """Whether ``value`` has the kind the framework key ``spec`` takes (a dict for a section)."""
    if isinstance(spec, Section):
        return isinstance(value, Mapping)
    if isinstance(spec, Field):
        return isinstance(value, spec.types) and not (isinstance(value, bool) and bool not in spec.types)
    return isinstance(value, Mapping)


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> Dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``: dicts merge key by key, other values replace.

    Keys match case-insensitively, so a YAML child may override ``SOLVER`` of a Python base
    written as ``solver``; the child's spelling wins. Under an ``optimizer`` or
    ``lr_scheduler`` whose ``type`` the override changes, the base's ``params`` are dropped
    first (see ``TYPED_SECTIONS``).
    """
    result = copy.deepcopy(dict(base))
    for key, value in override.items():
        existing = _find_key(result, key)
        if isinstance(value, Mapping) and not value.get(DELETE_KEY, False) and existing is not None \
                and isinstance(result[existing], Mapping):
            below = result.pop(existing)
            if isinstance(key, str) and key.lower() in TYPED_SECTIONS and _changes_type(below, value):
                below = {k: v for k, v in below.items() if not (isinstance(k, str) and k.lower() == "params")}
            merged = merge(below, value)
        else:
            merged = copy.deepcopy(value)
            if isinstance(merged, dict):
                merged.pop(DELETE_KEY, None)
            if existing is not None:
                result.pop(existing)
        result[key] = merged
    return result


def _changes_type(base: Mapping[str, Any], override: Mapping[str, Any]) -> bool:
    """Whether ``override`` names a ``type`` other than the base's (case-insensitively, as types are looked up)."""
    base_key, override_key = _find_key(base, "type"), _find_key(override, "type")
    if base_key is None or override_key is None:
        return False
    old, new = base[base_key], override[override_key]
    if isinstance(old, str) and isinstance(new, str):
        return old.lower() != new.lower()
    return old != new


def apply_opts(data: Dict[str, Any], opts: Sequence[str]) -> Dict[str, Any]:
    """Apply ``KEY VALUE`` pairs (dotted, case-insensitive keys; values parsed as Python/YAML literals)."""
    if len(opts) % 2:
        raise ConfigError(f"--opts: expected KEY VALUE pairs, got an odd number of items: {list(opts)}")
    data = copy.deepcopy(data)
    for key, raw in zip(opts[0::2], opts[1::2]):
        _set_path(data, key, parse_value(raw))
    return data


def parse_value(raw: str) -> Any:
    """'100' -> 100, '1e-3' -> 0.001, '[1, 2]' -> [1, 2], 'true' -> True, 'abc' -> 'abc'."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        pass
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return value if value is not None or raw.strip().lower() in ("null", "none", "~") else raw


def _set_path(data: Dict[str, Any], dotted: str, value: Any) -> None:
    parts: List[str] = dotted.split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--opts {dotted}: {where} is not a valid index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--opts {dotted}: {'.'.join(parts[:depth])} holds {node!r}, not a section")
        key = _find_key(node, part) or part.lower()
        if last:
            node[key] = value
        else:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]


def _find_key(mapping: Mapping[str, Any], key: Any) -> Any:
    if key in mapping:
        return key
    if isinstance(key, str):
        for existing in mapping:
            if isinstance(existing, str) and existing.lower() == key.lower():
                return existing
    return None


def read_config_file(path: str) -> Dict[str, Any]:
    """One config file's own keys, ``_base_`` still in it and not followed."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {os.path.abspath(path)}")
    return _read(os.path.abspath(path))
