"""Config: load (.py/.yaml with ``_base_``), override (``--opts``), validate, freeze.

Imports neither torch nor DeepSpeed, so a bad config fails in milliseconds, before any
process group or output directory exists.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import yaml

from engine.config.aliases import fold_aliases, mirror_aliases
from engine.config.checks import check_consistency
from engine.config.defaults import DEFAULTS
from engine.config.loader import apply_opts, load_file, merge
from engine.config.loggers import resolve_loggers
from engine.config.no_effect import warn_no_effect
from engine.config.node import CfgNode, key_paths, to_plain
from engine.utils.fileio import atomic_write_text

__all__ = ["CfgNode", "get_cfg", "build_cfg", "dump_cfg", "default_cfg", "user_key_paths"]


def get_cfg(config_file: str, opts: Optional[Sequence[str]] = None) -> CfgNode:
    """Load ``config_file``, apply ``opts`` (``KEY VALUE`` pairs), validate and freeze.

    Raises:
        engine.errors.ConfigError: naming the key path, the value and what was expected.
    """
    return build_cfg(load_file(config_file), opts)


def build_cfg(data: Dict[str, Any], opts: Optional[Sequence[str]] = None) -> CfgNode:
    """Validate an in-memory config dict (the same path a file takes after loading)."""
    data = apply_opts(data, list(opts or []))
    folded = fold_aliases(data)
    checked = DEFAULTS.check(folded, "")
    # both spellings count as written: errors name the one the user used (trainer.loss or trainer.model.loss)
    written = set(key_paths(data)) | set(key_paths(folded))
    check_consistency(checked)
    resolve_loggers(checked, written)
    warn_no_effect(checked, written)
    mirror_aliases(checked)
    return CfgNode(checked).mark_written(written).freeze()


def default_cfg() -> Dict[str, Any]:
    """Every framework key at its default, as plain dicts (documentation, tests)."""
    return DEFAULTS.check({}, "")


def user_key_paths(cfg: Any) -> List[str]:
    """Key paths of the user's own in the open sections (``trainer``, ``trainer.model``, ``dataloader``).

    Engine does not read them (user code does, e.g. ``cfg.TRAINER.MY_KEY``); the run logs
    them once at start, so a framework key that has no effect cannot pass unnoticed.

    Args:
        cfg: a config returned by ``get_cfg``/``build_cfg``.

    Returns:
        Dotted paths as the user spelled them, e.g. ``["trainer.my_key"]``.
    """
    return DEFAULTS.user_key_paths(to_plain(cfg))


def dump_cfg(cfg: Any, path: str) -> None:
    """Write the resolved config as YAML (atomically: a reader never sees half a file)."""
    atomic_write_text(path, yaml.safe_dump(to_plain(cfg), sort_keys=False, default_flow_style=False))


# re-exported for callers that merge dicts the way config files do
merge_dicts = merge
