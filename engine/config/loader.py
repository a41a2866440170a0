"""Reading config files (.py/.yaml), resolving ``_base_`` chains and applying ``--opts``."""

from __future__ import annotations

import ast
import copy
import os
import runpy
import types
from typing import Any, Dict, List, Mapping, Sequence

import yaml

from engine.errors import ConfigError

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"  # a dict with _delete_=True replaces its base instead of merging into it
_PLAIN = (dict, list, tuple, str, int, float, bool, type(None))


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
        data = {
            k: v for k, v in namespace.items()
            if (not k.startswith("__")) and isinstance(v, _PLAIN) and not isinstance(v, types.ModuleType)
            and (k == BASE_KEY or not k.startswith("_"))
        }
    else:
        raise ConfigError(f"{path}: unsupported config file type {ext!r}; expected .py, .yaml or .yml")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> Dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``: dicts merge key by key, other values replace.

    Keys match case-insensitively, so a YAML child may override ``SOLVER`` of a Python base
    written as ``solver``; the child's spelling wins.
    """
    result = copy.deepcopy(dict(base))
    for key, value in override.items():
        existing = _find_key(result, key)
        if isinstance(value, Mapping) and not value.get(DELETE_KEY, False) and existing is not None \
                and isinstance(result[existing], Mapping):
            merged = merge(result.pop(existing), value)
        else:
            merged = copy.deepcopy(value)
            if isinstance(merged, dict):
                merged.pop(DELETE_KEY, None)
            if existing is not None:
                result.pop(existing)
        result[key] = merged
    return result


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
