"""Framework keys that are accepted and checked but read by nothing, and the one warning a run gives for each.

TrainFramework configs write some keys engine has no use for; refusing them would break those
configs, and ignoring them silently would let a user believe they act. So each is listed here
with the reason, shown beside the key in the config reference, and a config that turns one on
gets one warning per process naming the key, the value and why it changes nothing. A key that
acts only with a given value of another (``ACTS_ONLY_WITH``: ``solver.max_rollbacks``) and the
keys of a section that act only behind its switch (``SWITCHED``: ``solver.spike``) are said once
the same way when a config writes them without it.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, Set, Tuple

logger = logging.getLogger("engine")

#: key path → why it has no effect (shown in the config reference; a unit test holds that no
#: module outside engine/config reads these keys)
NO_EFFECT: Dict[str, str] = {
    "solver.generator.clip_gradients.group": "TrainFramework clipped per parameter group when true; engine clips "
                                             "over all parameters either way",
}

#: key path → (the key it depends on, the values of that key under which it acts): written with any
#: other value of that key, it changes nothing, and the run says so once
ACTS_ONLY_WITH: Dict[str, Tuple[str, Tuple[Any, ...]]] = {
    "solver.max_rollbacks": ("solver.nan_policy", ("rollback",)),
}

#: sections whose other keys act only while the named switch is on (a user who tunes them
#: with the switch off is told once that they change nothing)
SWITCHED: Dict[str, str] = {
    "solver.spike": "enabled",
}

_said: Set[str] = set()  # one warning per key and value per process, however often a config is built


def warn_no_effect(cfg: Dict[str, Any], written: Iterable[str]) -> None:
    """Warn once for each key of ``NO_EFFECT`` the user wrote with a value that would have meant something.

    A falsy value (``group=False``) asks for what engine does anyway, so it is not warned about.

    Args:
        cfg: the validated config (plain dicts).
        written: the key paths the user's files and ``--opts`` set.
    """
    written = {path.lower() for path in written}
    for path, why in NO_EFFECT.items():
        if path not in written:
            continue
        value = _value(cfg, path)
        said = f"{path}={value!r}"
        if value and said not in _said:
            _said.add(said)
            logger.warning(f"{path} = {value!r} has no effect: {why}")
    for path, (needs, values) in ACTS_ONLY_WITH.items():
        actual = _value(cfg, needs)
        said = f"{path} without {needs}={actual!r}"
        if path in written and str(actual).lower() not in values and said not in _said:
            _said.add(said)
            logger.warning(f"{path} = {_value(cfg, path)!r} has no effect: {needs} is {actual!r}; it acts only "
                           f"with {needs} = {' or '.join(map(repr, values))}")
    _warn_switched_off(cfg, written)


def _value(cfg: Dict[str, Any], path: str) -> Any:
    value: Any = cfg
    for part in path.split("."):
        value = value[part]
    return value


def _warn_switched_off(cfg: Dict[str, Any], written: Set[str]) -> None:
    """One warning per process for the keys of a ``SWITCHED`` section written while its switch is off."""
    for section, switch in SWITCHED.items():
        node = _value(cfg, section)
        if node[switch]:
            continue
        tuned = [f"{section}.{key} = {value!r}" for key, value in node.items()
                 if key != switch and f"{section}.{key}" in written]
        said = "; ".join(tuned)
        if tuned and said not in _said:
            _said.add(said)
            verb = "has" if len(tuned) == 1 else "have"
            logger.warning(f"{', '.join(tuned)} {verb} no effect while {section}.{switch} is False")
