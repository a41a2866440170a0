"""``trainer.loggers`` checked, and reconciled with the older ``trainer.tensorboard`` switch.

``trainer.loggers`` is the list of trackers (``engine.trackers``) that receive the metrics
window on rank 0; ``trainer.tensorboard`` is the seed-era switch for its ``tensorboard``
entry. How the two combine:

* only ``trainer.loggers`` written: it is the list;
* only ``trainer.tensorboard`` written: the default list with ``tensorboard`` taken out
  (``False``) or kept (``True``), so a seed config that turned TensorBoard off stays off;
* both written and disagreeing: ``trainer.loggers`` wins, the newer and more specific key,
  and one warning names both;
* after the check both agree: ``trainer.tensorboard`` is ``'tensorboard' in trainer.loggers``,
  so code that reads either key sees the same decision.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, Set

from engine.trackers import check_loggers

logger = logging.getLogger("engine")
_said: Set[str] = set()  # one warning per process, however often a config is built


def resolve_loggers(cfg: Dict[str, Any], written: Iterable[str]) -> None:
    """Check ``trainer.loggers`` (names, packages) and align ``trainer.tensorboard`` with it, in place.

    Args:
        cfg: the validated config (plain dicts).
        written: the key paths the user's files and ``--opts`` set.

    Raises:
        engine.errors.ConfigError: an unknown or repeated tracker, or one whose package
            is not installed (naming the ``pip install`` line).
    """
    trainer = cfg["trainer"]
    written = {path.lower() for path in written}
    names = check_loggers(trainer["loggers"], "trainer.loggers")
    flag_written, list_written = "trainer.tensorboard" in written, "trainer.loggers" in written
    if flag_written and not list_written:
        names = [n for n in names if n != "tensorboard"]
        if trainer["tensorboard"]:
            names.insert(0, "tensorboard")
    elif flag_written and trainer["tensorboard"] != ("tensorboard" in names):
        _warn_once(f"trainer.tensorboard = {trainer['tensorboard']} disagrees with trainer.loggers = {names}: "
                   "trainer.loggers decides (TensorBoard is " + ("on" if "tensorboard" in names else "off") +
                   "); remove trainer.tensorboard from the config")
    trainer["loggers"] = names
    trainer["tensorboard"] = "tensorboard" in names


def _warn_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        logger.warning(message)
