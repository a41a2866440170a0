"""Declarative description of framework-owned config keys, and its validator.

Every framework key is declared once (in ``defaults.py``) with its default, type and a
one-line meaning. Validation walks the user's config against that declaration: unknown
keys, wrong types and out-of-range values fail with the full key path. ``Open`` marks
user-owned sections whose keys belong to the user's constructors and pass through; a
``Section`` with ``accepts_user_keys`` (the seed's ``new_allowed`` sections ``trainer`` and
``dataloader``) also keeps keys of the user's own, refusing only likely typos of its own keys.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from engine.errors import ConfigError
from engine.utils.suggest import did_you_mean, typo_of

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


@dataclass
class Field:
    """A framework-owned leaf value.

    Args:
        default: value used when the user does not set it.
        types: accepted Python types; an int is accepted where float is, a tuple where list is.
        doc: one line shown in the config reference (``docs/config.md``).
        choices: allowed values (strings compared case-insensitively), or None.
        minimum: smallest allowed number, or None.
        nullable: whether None is allowed.
    """

    default: Any
    types: Tuple[type, ...]
    doc: str
    choices: Optional[Sequence[Any]] = None
    minimum: Optional[float] = None
    nullable: bool = False

    def check(self, value: Any, path: str) -> Any:
        if value is None and (self.nullable or self.default is None):
            return None
        if not _is_instance(value, self.types):
            expected = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in self.types)
            raise ConfigError(f"{path}: expected {expected}, got {value!r} ({type(value).__name__})")
        if isinstance(value, tuple):
            value = list(value)
        if self.choices is not None and _normalise_choice(value) not in [_normalise_choice(c) for c in self.choices]:
            raise ConfigError(f"{path}: {value!r} is not one of {list(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{path}: {value!r} is below the minimum {self.minimum}")
        return value


@dataclass
class Open:
    """A user-owned section: any keys, passed to the user's constructor unchanged.

    Args:
        doc: one line for the config reference.
        required_keys: keys that must be present (e.g. the registry ``name``).
        allow_list: whether a list of such dicts is accepted too (several discriminators).
        nullable: whether the section may be absent (None).
    """

    doc: str
    required_keys: Tuple[str, ...] = ()
    allow_list: bool = False
    nullable: bool = True
    default: Any = None

    def check(self, value: Any, path: str) -> Any:
        if value is None:
            if not self.nullable:
                raise ConfigError(f"{path}: this section is required ({self.doc})")
            return copy.deepcopy(self.default)
        items = value if (self.allow_list and isinstance(value, (list, tuple))) else [value]
        for index, item in enumerate(items):
            where = f"{path}[{index}]" if items is value else path
            if not isinstance(item, Mapping):
                kinds = "a dict or a list of dicts" if self.allow_list else "a dict"
                raise ConfigError(f"{where}: expected {kinds}, got {item!r}")
            for key in self.required_keys:
                if key not in item:
                    raise ConfigError(f"{where}.{key}: required key is missing ({self.doc})")
        return value


@dataclass
class Section:
    """A framework-owned dict of ``Field``/``Open``/``Section`` entries.

    ``extra`` names further keys that are accepted and passed through untouched (e.g. the
    DeepSpeed keys engine does not interpret). Other keys are errors, unless ``accepts_user_keys``
    is set: then a key that is not a likely typo of a declared one (``typo_of``) is the
    user's own, kept as written for user code to read (``cfg.TRAINER.MY_KEY``), as the
    seed's ``new_allowed`` sections did.
    """

    entries: Dict[str, Any]
    doc: str = ""
    extra: Tuple[str, ...] = field(default=())
    accepts_user_keys: bool = False

    def check(self, value: Any, path: str) -> Dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path or 'config'}: expected a dict, got {value!r}")
        known = list(self.entries) + list(self.extra)
        result: Dict[str, Any] = {}
        own: Dict[Any, Any] = {}
        for key, item in value.items():
            lower = key.lower() if isinstance(key, str) else key
            if lower in known:
                result[lower] = item
            elif self.accepts_user_keys and isinstance(key, str) and typo_of(key, known) is None:
                own[key] = item
            else:
                raise ConfigError(self._unknown_key_message(key, path, known))
        checked = {}
        for key, spec in self.entries.items():
            where = f"{path}.{key}" if path else key
            if key in result:
                checked[key] = spec.check(result.pop(key), where)
            else:
                checked[key] = spec.check(None, where) if not isinstance(spec, Field) else copy.deepcopy(spec.default)
        checked.update(result)  # the accepted extras, untouched
        checked.update(own)
        return checked

    def _unknown_key_message(self, key: Any, path: str, known: List[str]) -> str:
        where = f"{path}.{key}" if path else str(key)
        typo = typo_of(str(key), known) if self.accepts_user_keys else None
        if typo is not None:
            return (f"{where}: unknown key. Did you mean {typo!r}? This section accepts keys of your own, but this "
                    f"one is a likely misspelling of the framework key {typo!r}. Framework keys here: {', '.join(known)}")
        return f"{where}: unknown key.{did_you_mean(str(key), known)} Valid keys here: {', '.join(known)}"

    def user_key_paths(self, checked: Mapping[str, Any], path: str = "") -> List[str]:
        """Key paths in a checked config that ``accepts_user_keys`` sections kept as the user's own.

        Engine does not read these; the run lists them once at start so a key of the user's
        own and a framework key that engine ignores can be told apart in the log.
        """
        found: List[str] = []
        known = set(self.entries) | set(self.extra)
        for key, value in checked.items():
            where = f"{path}.{key}" if path else str(key)
            spec = self.entries.get(key)
            if isinstance(spec, Section) and isinstance(value, Mapping):
                found.extend(spec.user_key_paths(value, where))
            elif key not in known:
                found.append(where)
        return found

    def walk(self, prefix: str = ""):
        """Yield ``(key_path, spec)`` for every declared key, depth first (for docs)."""
        for key, spec in self.entries.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path, spec
            if isinstance(spec, Section):
                yield from spec.walk(path)


def _is_instance(value: Any, types: Tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if float in types and isinstance(value, int):
        return True
    if list in types and isinstance(value, tuple):
        return True
    if dict in types and isinstance(value, Mapping):
        return True
    return isinstance(value, types)


def _normalise_choice(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value
