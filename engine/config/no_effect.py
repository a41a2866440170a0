"""Framework keys that are accepted and checked but read by nothing, and the one warning a run gives for each.

TrainFramework configs write some keys engine has no use for; refusing them would break those
configs, and ignoring them silently would let a user believe they act. So each is listed here
with the reason, shown beside the key in the config reference, and a config that turns one on
gets one warning per process naming the key, the value and why it changes nothing.
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


def _value(cfg: Dict[str, Any], path: str) -> Any:
    value: Any = cfg
    for part in path.split("."):
        value = value[part]
    return value
