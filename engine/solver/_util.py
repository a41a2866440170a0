"""Small helpers shared by the solver modules."""

from __future__ import annotations

from typing import Any, Mapping


def plain(value: Any) -> Any:
    """Config nodes as plain dicts and sequences as lists, recursively.

    Constructors, ``state_dict`` comparisons and ds_config.json then see ordinary Python
    data whatever Mapping subclass the config loader produced.
    """
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
