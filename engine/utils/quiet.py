"""Silencing a logger for the length of a dry run."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator


@contextlib.contextmanager
def quiet(logger_name: str) -> Iterator[None]:
    """Drop a logger's warnings while a config check builds something only to test it.

    The real build moments later repeats every warning that matters; the dry run's copies
    would only double them (and DeepSpeed's info lines about a throwaway config confuse).

    Args:
        logger_name: the logger to raise to ERROR, e.g. ``"DeepSpeed"``.
    """
    logger = logging.getLogger(logger_name)
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)
