"""Where each config value came from: an engine default, the config file, one of its ``_base_`` files, or ``--opts``.

Why a record of its own: ``engine plan`` shows it beside every value, and a check that two
places disagree must know which of them the user actually wrote (a value engine filled in
from its defaults is not a conflict). The record is taken from the same files and ``--opts``
the loader merges, in the loader's merge order, so the last writer of a key is its source.

Key paths are lower-case and dotted as in error messages (``solver.generator.optimizer.type``);
a list counts as one value. Seed spellings that engine folds to another place
(``trainer.loss`` → ``trainer.model.loss``) are recorded where the user wrote them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence

from engine.config.loader import BASE_KEY, DELETE_KEY, base_paths, parse_value, read_config_file

DEFAULT = "default"
OPTS = "--opts"


@dataclass(frozen=True)
class Provenance:
    """Key path → source label (``"file cfg.py"``, ``"_base_ base.py"``, ``"--opts"``) for every key the user set.

    Args:
        sources: the recorded key paths; a path absent from it (and from its parents) is a default.
    """

    sources: Mapping[str, str] = field(default_factory=dict)

    def source(self, path: str) -> str:
        """Where the value at ``path`` came from; ``"default"`` when no file or option set it.

        A section is as old as its newest key: ``source("deepspeed")`` names the last place
        that wrote any key under it.
        """
        path = path.lower()
        node = path
        while node:  # a parent set as one value (a list, or None) covers its children
            if node in self.sources:
                return self.sources[node]
            node = node.rpartition(".")[0]
        below = [src for key, src in self.sources.items() if key.startswith(path + ".")]
        return below[-1] if below else DEFAULT

    def user_set(self, path: str) -> bool:
        """Whether any file or ``--opts`` wrote ``path`` or a key under it."""
        return self.source(path) != DEFAULT

    def to_json(self) -> Dict[str, str]:
        return dict(self.sources)


def trace_config(config_file: str, opts: Optional[Sequence[str]] = None) -> Provenance:
    """The provenance of the config ``engine.config.get_cfg(config_file, opts)`` resolves.

    Args:
        config_file: the top config file (its ``_base_`` chain is followed).
        opts: ``KEY VALUE`` pairs, as given to ``--opts``.

    Returns:
        The frozen record; malformed files raise the same ConfigError the loader raises.
    """
    sources: Dict[str, str] = {}
    _trace_file(os.path.abspath(config_file), sources, top=True)
    items = list(opts or [])
    for key, raw in zip(items[0::2], items[1::2]):
        _record(sources, key.lower(), parse_value(raw), OPTS)
    return Provenance(sources)


def _trace_file(path: str, sources: Dict[str, str], *, top: bool) -> None:
    data = read_config_file(path)
    for base in base_paths(path, data.pop(BASE_KEY, None)):
        _trace_file(base, sources, top=False)
    label = f"{'file' if top else BASE_KEY} {os.path.relpath(path)}"
    for key, value in data.items():
        _record(sources, str(key).lower(), value, label)


def _record(sources: Dict[str, str], path: str, value: Any, label: str) -> None:
    """Record ``value`` written at ``path`` by ``label``, the way ``merge`` would apply it."""
    if isinstance(value, Mapping) and value.get(DELETE_KEY, False) or not isinstance(value, Mapping):
        for key in [k for k in sources if k == path or k.startswith(path + ".")]:
            del sources[key]  # replaced as a whole
    if not isinstance(value, Mapping):
        sources[path] = label
        return
    sources.pop(path, None)
    for key, child in value.items():
        if key != DELETE_KEY:
            _record(sources, f"{path}.{str(key).lower()}", child, label)
    if not any(k.startswith(path + ".") for k in sources):
        sources[path] = label  # an empty dict is still something the user wrote
