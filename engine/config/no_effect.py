"""Framework keys that are accepted and checked but read by nothing, and the one warning a run gives for each.

TrainFramework configs write some keys engine has no use for; refusing them would break those
configs, and ignoring them silently would let a user believe they act. So each is listed here
with the reason, shown beside the key in the config reference, and a config that turns one on
gets one warning per process naming the key, the value and why it changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, Set

logger = logging.getLogger("engine")

#: key path → why it has no effect (shown in the config reference; a unit test holds that no
#: module outside engine/config reads these keys)
NO_EFFECT: Dict[str, str] = {
    "solver.generator.clip_gradients.group": "TrainFramework clipped per parameter group when true; engine clips "
                                             "over all parameters either way",
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
        value: Any = cfg
        for part in path.split("."):
            value = value[part]
        said = f"{path}={value!r}"
        if value and said not in _said:
            _said.add(said)
            logger.warning(f"{path} = {value!r} has no effect: {why}")
