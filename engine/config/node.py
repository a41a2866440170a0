"""The config object: a dict whose keys are read case-insensitively as attributes.

Config files are written in lowercase (``solver = dict(max_iter=...)``) and code reads them
upper-case (``cfg.SOLVER.MAX_ITER``), as in the seed. Keys are stored as the user wrote
them, so user-owned sections (network, dataset, loss params) reach constructors unchanged.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Optional


class CfgNode(dict):
    """A nested dict with case-insensitive attribute and item access, frozen after validation."""

    def __init__(self, init: Optional[Mapping] = None) -> None:
        super().__init__()
        object.__setattr__(self, "_frozen", False)
        object.__setattr__(self, "_written", frozenset())
        for key, value in (init or {}).items():
            dict.__setitem__(self, key, _wrap(value))

    # ---- lookups ---------------------------------------------------------------------------
    def _key(self, name: Any) -> Any:
        """The stored key matching ``name``: exact first, then case-insensitive."""
        if dict.__contains__(self, name) or not isinstance(name, str):
            return name
        lower = name.lower()
        for key in self.keys():
            if isinstance(key, str) and key.lower() == lower:
                return key
        return name

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        key = self._key(name)
        if not dict.__contains__(self, key):
            raise AttributeError(f"config has no key {name!r}; keys: {', '.join(map(str, self.keys()))}")
        return dict.__getitem__(self, key)

    def __getitem__(self, name: Any) -> Any:
        return dict.__getitem__(self, self._key(name))

    def __contains__(self, name: Any) -> bool:
        return dict.__contains__(self, self._key(name))

    def get(self, name: Any, default: Any = None) -> Any:
        key = self._key(name)
        return dict.__getitem__(self, key) if dict.__contains__(self, key) else default

    # ---- mutation --------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __setitem__(self, name: Any, value: Any) -> None:
        if self._frozen:
            raise AttributeError(f"config is frozen; cannot set {name!r}. Use cfg.clone() to change a copy.")
        dict.__setitem__(self, self._key(name), _wrap(value))

    def __delitem__(self, name: Any) -> None:
        if self._frozen:
            raise AttributeError(f"config is frozen; cannot delete {name!r}")
        dict.__delitem__(self, self._key(name))

    def freeze(self) -> "CfgNode":
        for value in _children(self):
            value.freeze()
        object.__setattr__(self, "_frozen", True)
        return self

    def is_frozen(self) -> bool:
        return self._frozen

    def mark_written(self, paths: Iterable[str]) -> "CfgNode":
        """Record which key paths the user's files and ``--opts`` set (the rest are defaults).

        Paths are dotted and lower-case, list items by index (``solver.generator.optimizer``,
        ``trainer.model.loss.cls.0.name``); every prefix of a written path is written.
        """
        object.__setattr__(self, "_written", frozenset(p.lower() for p in paths))
        return self

    def is_written(self, path: str) -> bool:
        """Whether the user wrote ``path`` (or something inside it), rather than taking its default.

        A value the user did not write is not theirs to conflict with: an existing DeepSpeed
        JSON may set it instead.
        """
        return path.lower() in self._written

    def clone(self) -> "CfgNode":
        """An unfrozen deep copy."""
        return CfgNode(to_plain(self)).mark_written(self._written)

    def to_dict(self) -> dict:
        """Plain nested dicts/lists, for constructors, YAML and JSON."""
        return to_plain(self)

    def __reduce__(self):  # pickle (data-loader workers, spawn) as a plain dict
        return (_rebuild, (to_plain(self), self._frozen, sorted(self._written)))


def _rebuild(data: dict, frozen: bool, written: Iterable[str] = ()) -> CfgNode:
    node = CfgNode(data).mark_written(written)
    return node.freeze() if frozen else node


def _wrap(value: Any) -> Any:
    if isinstance(value, CfgNode):
        return value
    if isinstance(value, Mapping):
        return CfgNode(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


def _children(node: Any) -> Iterator[CfgNode]:
    values = node.values() if isinstance(node, dict) else node
    for value in values:
        if isinstance(value, CfgNode):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from _children(value)


def key_paths(value: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key path in nested dicts and lists (``a``, ``a.b``, ``a.l.0``), lower-case."""
    items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, child in items:
        path = f"{prefix}.{key}".lower() if prefix else str(key).lower()
        yield path
        yield from key_paths(child, path)


def to_plain(value: Any) -> Any:
    """Deep-convert CfgNodes to dicts and tuples to lists (YAML/JSON friendly)."""
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
